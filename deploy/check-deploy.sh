#!/usr/bin/env bash
# Checks the deployment files offline (nothing here fetches at run time):
# `helm lint --strict` and `helm template` of the chart, the rendered
# manifests validated against Kubernetes' JSON schemas (kubernetes-validate
# ships them), and the compose file's services each with a healthcheck.
# Helm is built once from Go's module proxy, kubernetes-validate installed
# once from PyPI, both into the cache outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"
helm_version=v3.22.0
helm="$cache/helm-$helm_version/helm"
if [ ! -x "$helm" ]; then
  echo "deploy: building helm $helm_version from Go's module proxy into $cache (once)"
  GOBIN="$cache/helm-$helm_version" GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$helm_version"
fi
venv="$cache/kubernetes-validate"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "deploy: installing kubernetes-validate from PyPI into $venv (once)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0
fi
"$helm" lint --strict deploy/helm/tally
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
"$helm" template tally deploy/helm/tally > "$rendered"
"$venv/bin/kubernetes-validate" --strict --quiet -k 1.33.0 "$rendered"
echo "deploy: the chart renders $(grep -c '^kind:' "$rendered") valid manifests"
"$venv/bin/python" - deploy/compose.yaml <<'PY'
import sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
services = compose["services"]
missing = [name for name, svc in services.items() if "healthcheck" not in svc]
assert not missing, f"services without a healthcheck: {missing}"
for name in ("kafka", "postgres", "collector", "rating", "invoicing", "api"):
    assert name in services, f"compose has no {name}"
print(f"deploy: compose.yaml has {len(services)} services, each with a healthcheck")
PY
