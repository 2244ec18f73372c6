#!/usr/bin/env bash
# Installs Apache Kafka (KRaft mode: broker and controller in one JVM) once,
# into a cache outside the clone: $TALLY_CACHE_DIR/kafka-<version>/libs, or
# ~/.cache/tally. Maven resolves org.apache.kafka:kafka_2.13 and its runtime
# dependencies from Maven Central (deploy/kafka/pom.xml; downloads are kept
# in ~/.m2). Needs Java 17 or newer and Maven; later runs return at once.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
cache="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"
home="$cache/kafka-$version"
if [ -f "$home/.installed" ]; then
  echo "kafka: Apache Kafka $version in $home (cached)"
  exit 0
fi
for tool in java mvn; do
  if ! command -v "$tool" >/dev/null; then
    echo "kafka: '$tool' is missing: install Java 17+ and Maven (Debian: openjdk-17-jre-headless maven)" >&2
    exit 1
  fi
done
echo "kafka: resolving Apache Kafka $version from Maven Central into $home (once)"
rm -rf "$home"
mkdir -p "$home"
mvn -q -B -Dstyle.color=never -f deploy/kafka/pom.xml dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$home/libs"
touch "$home/.installed"
echo "kafka: installed $(ls "$home/libs" | wc -l) jars in $home/libs"
