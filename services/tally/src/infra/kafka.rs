//! A local Apache Kafka in KRaft mode: one node for `tally up` and the demo,
//! three for the failover tests. Each node is broker and controller at once,
//! runs on the machine's Java from the jars `deploy/install-kafka.sh` put in
//! the cache, and keeps its data under the cluster's directory, so a
//! restarted node finds its logs again.
//!
//! Nodes run detached from the process that starts them (their ids are in
//! `node-N/pid`): `tally local kafka` returns while they keep running, and
//! `tally local stop-kafka` (or [`LocalKafka::stop`]) ends them.

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cache_dir, port_open, wait_for_port};

/// The last `n` lines of a log file, or a note that it could not be read.
fn last_lines(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(unreadable: {e})"),
    }
}

/// The Apache Kafka release `deploy/install-kafka.sh` installs.
pub const KAFKA_VERSION: &str = "4.1.1";

/// Where the jars are: `TALLY_KAFKA_HOME`, else `<cache>/kafka-<version>`.
pub fn kafka_home() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("TALLY_KAFKA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join(format!("kafka-{KAFKA_VERSION}")));
    if home.join("libs").is_dir() {
        return Ok(home);
    }
    bail!(
        "Apache Kafka {KAFKA_VERSION} is not installed in {}: run `bash deploy/install-kafka.sh` \
         (or set KAFKA_BROKERS to a running Kafka)",
        home.display()
    )
}

fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|java| java.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// One node: its id, its client port and its controller port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Node {
    pub id: u32,
    pub port: u16,
    pub controller_port: u16,
}

/// A local cluster, described by `cluster.json` in its directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalKafka {
    pub dir: PathBuf,
    pub cluster_id: String,
    pub nodes: Vec<Node>,
    /// A second listener of a single node, SASL_SSL with SCRAM-SHA-256.
    #[serde(default)]
    pub secure: Option<Secure>,
}

/// A SASL_SSL listener: TLS with a certificate of a local CA, SCRAM-SHA-256
/// credentials made at format time.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secure {
    pub port: u16,
    pub user: String,
    pub password: String,
    /// What clients trust.
    pub ca: PathBuf,
    pub keystore: PathBuf,
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure")
            .field("port", &self.port)
            .field("user", &self.user)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl LocalKafka {
    /// The cluster in `dir`, described anew (`nodes` nodes, client ports
    /// `first_port`, `first_port + 2`, …; each controller one above) unless
    /// the directory already holds one of that size.
    pub fn create(dir: &Path, nodes: u32, first_port: u16) -> anyhow::Result<LocalKafka> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::fs::canonicalize(dir)?;
        if let Ok(existing) = LocalKafka::open(&dir) {
            if existing.nodes.len() == nodes as usize && existing.nodes[0].port == first_port {
                return Ok(existing);
            }
            bail!(
                "{} holds a cluster of {} node(s) from port {}: stop it and remove the directory first",
                dir.display(),
                existing.nodes.len(),
                existing.nodes[0].port
            );
        }
        let cluster = LocalKafka {
            cluster_id: new_cluster_id(uuid::Uuid::new_v4),
            nodes: (0..nodes)
                .map(|i| {
                    let port = first_port + 2 * i as u16;
                    Node {
                        id: i + 1,
                        port,
                        controller_port: port + 1,
                    }
                })
                .collect(),
            dir,
            secure: None,
        };
        std::fs::write(
            cluster.dir.join("cluster.json"),
            serde_json::to_vec_pretty(&cluster)?,
        )?;
        Ok(cluster)
    }

    /// Adds a SASL_SSL listener on `port` (a single node, before its first
    /// start): certificates of a local CA under `tls/`, a SCRAM user
    /// `tally` with a random password.
    pub fn with_secure_listener(mut self, port: u16) -> anyhow::Result<LocalKafka> {
        if self.nodes.len() != 1 {
            bail!("a secure listener is for a single node");
        }
        if let Some(secure) = &self.secure {
            if secure.port == port {
                return Ok(self);
            }
            bail!(
                "{} has a secure listener on port {} already",
                self.dir.display(),
                secure.port
            );
        }
        if self.node_dir(1).join("data/meta.properties").exists() {
            bail!(
                "{} is formatted already: a secure listener is added before the first start",
                self.dir.display()
            );
        }
        let certs = super::tls::Certs::make(&self.dir.join("tls"))?;
        self.secure = Some(Secure {
            port,
            user: "tally".into(),
            password: uuid::Uuid::new_v4().simple().to_string(),
            ca: certs.ca,
            keystore: certs.keystore,
        });
        std::fs::write(
            self.dir.join("cluster.json"),
            serde_json::to_vec_pretty(&self)?,
        )?;
        Ok(self)
    }

    /// The secure listener's address and the librdkafka properties a client
    /// needs for it (what `TALLY_KAFKA_*` would carry).
    pub fn secure_client(&self) -> Option<(String, Vec<(String, String)>)> {
        let s = self.secure.as_ref()?;
        Some((
            format!("127.0.0.1:{}", s.port),
            vec![
                ("security.protocol".into(), "SASL_SSL".into()),
                ("sasl.mechanisms".into(), "SCRAM-SHA-256".into()),
                ("sasl.username".into(), s.user.clone()),
                ("sasl.password".into(), s.password.clone()),
                ("ssl.ca.location".into(), s.ca.display().to_string()),
            ],
        ))
    }

    /// The cluster described in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<LocalKafka> {
        let path = dir.join("cluster.json");
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_slice(&text)?)
    }

    /// `host:port,…` of every node.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node_dir(&self, id: u32) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn node(&self, id: u32) -> anyhow::Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no node {id} in {}", self.dir.display()))
    }

    /// `server.properties` of a node. Replication follows the cluster's
    /// size: with three nodes, topics created without a replication factor
    /// get 3 and `min.insync.replicas=2`, as in production.
    fn properties(&self, node: &Node) -> String {
        let n = self.nodes.len();
        let voters = self
            .nodes
            .iter()
            .map(|v| format!("{}@127.0.0.1:{}", v.id, v.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let replication = n.min(3);
        let min_isr = if n >= 3 { 2 } else { 1 };
        let (listener, advertised, map, sasl) = match &self.secure {
            Some(secure) => (
                format!(",SASL_SSL://127.0.0.1:{}", secure.port),
                format!(",SASL_SSL://127.0.0.1:{}", secure.port),
                ",SASL_SSL:SASL_SSL",
                format!(
                    "sasl.enabled.mechanisms=SCRAM-SHA-256\n\
                     listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=\
                     org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
                     listener.name.sasl_ssl.ssl.keystore.type=PEM\n\
                     listener.name.sasl_ssl.ssl.keystore.location={}\n",
                    secure.keystore.display()
                ),
            ),
            None => (String::new(), String::new(), "", String::new()),
        };
        format!(
            "# Written by tally (services/tally/src/infra/kafka.rs).\n\
             process.roles=broker,controller\n\
             node.id={id}\n\
             controller.quorum.voters={voters}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}{listener}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}{advertised}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{map}\n\
             {sasl}\
             log.dirs={data}\n\
             num.partitions=1\n\
             default.replication.factor={replication}\n\
             min.insync.replicas={min_isr}\n\
             offsets.topic.replication.factor={replication}\n\
             offsets.topic.num.partitions=10\n\
             transaction.state.log.replication.factor={replication}\n\
             transaction.state.log.min.isr={min_isr}\n\
             share.coordinator.state.topic.replication.factor={replication}\n\
             share.coordinator.state.topic.min.isr={min_isr}\n\
             # A group's first member does not wait 3 s for others to join.\n\
             group.initial.rebalance.delay.ms=0\n",
            id = node.id,
            port = node.port,
            controller = node.controller_port,
            data = self.node_dir(node.id).join("data").display(),
        )
    }

    /// Writes each node's configuration and formats its storage, once.
    /// A failed format is tried once more from an empty data directory
    /// (CI saw one fail without a trace), and a second failure names the
    /// tool's own last lines.
    fn prepare(&self, home: &Path) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("log4j2.properties"), LOG4J2)?;
        let mut formatting = Vec::new();
        for node in &self.nodes {
            let dir = self.node_dir(node.id);
            std::fs::create_dir_all(&dir)?;
            let properties = dir.join("server.properties");
            std::fs::write(&properties, self.properties(node))?;
            if dir.join("data/meta.properties").exists() {
                continue;
            }
            let child = self.format(home, &dir, &properties)?;
            formatting.push((dir, properties, child));
        }
        for (dir, properties, mut child) in formatting {
            if child.wait()?.success() {
                continue;
            }
            let _ = std::fs::remove_dir_all(dir.join("data"));
            if self.format(home, &dir, &properties)?.wait()?.success() {
                continue;
            }
            let log = dir.join("format.log");
            bail!(
                "formatting Kafka's storage failed twice; {} ends with:\n{}",
                log.display(),
                last_lines(&log, 20)
            );
        }
        Ok(())
    }

    /// Starts Kafka's storage tool on one node's configuration; what it
    /// prints goes to the node's `format.log`.
    fn format(&self, home: &Path, dir: &Path, properties: &Path) -> anyhow::Result<Child> {
        let log = File::create(dir.join("format.log"))?;
        let mut format = self.java(home, dir);
        format
            .arg("kafka.tools.StorageTool")
            .args(format_args(&self.cluster_id))
            .arg(properties);
        if let Some(secure) = &self.secure {
            format.arg("--add-scram").arg(format!(
                "SCRAM-SHA-256=[name={},password={}]",
                secure.user, secure.password
            ));
        }
        format
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting Java to format Kafka's storage (is Java 17 installed?)")
    }

    fn java(&self, home: &Path, node_dir: &Path) -> Command {
        let heap = std::env::var("TALLY_KAFKA_HEAP").unwrap_or_else(|_| "512m".into());
        let mut cmd = Command::new(java());
        cmd.arg(format!("-Xmx{heap}"))
            .args([
                "-Xms64m",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("log4j2.properties").display()
            ))
            .arg(format!("-Dkafka.logs.dir={}", node_dir.display()))
            .arg("-cp")
            .arg(home.join("libs/*"))
            .stdin(Stdio::null());
        cmd
    }

    /// Starts every node that is not running, and waits until the cluster
    /// serves metadata with all of them.
    pub async fn start(&self) -> anyhow::Result<()> {
        let home = kafka_home()?;
        self.prepare(&home)?;
        for node in &self.nodes {
            if self.pid(node.id).is_none() {
                self.spawn(&home, node)?;
            }
        }
        self.wait_ready(Duration::from_secs(120)).await
    }

    /// Starts one node again (after [`LocalKafka::kill`]) and waits for its port.
    pub async fn restart(&self, id: u32) -> anyhow::Result<()> {
        let node = self.node(id)?.clone();
        self.spawn(&kafka_home()?, &node)?;
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], node.port)),
            "the Kafka node",
        )
        .await
    }

    fn spawn(&self, home: &Path, node: &Node) -> anyhow::Result<()> {
        let dir = self.node_dir(node.id);
        let child = self
            .java(home, &dir)
            .arg("kafka.Kafka")
            .arg(dir.join("server.properties"))
            .stdout(File::create(dir.join("stdout.log"))?)
            .stderr(Stdio::from(File::create(dir.join("stderr.log"))?))
            .spawn()
            .context("starting Kafka (is Java 17 installed?)")?;
        std::fs::write(dir.join("pid"), child.id().to_string())?;
        Ok(())
    }

    /// The process id of a node that is running: the pid file's process,
    /// if it is alive and is this node's Kafka (a stale pid file, after a
    /// reboot, may name another process).
    pub fn pid(&self, id: u32) -> Option<u32> {
        let dir = self.node_dir(id);
        let pid: u32 = std::fs::read_to_string(dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline)
            .contains(&dir.join("server.properties").display().to_string());
        (ours && alive(pid)).then_some(pid)
    }

    /// Waits until every node's port answers and the cluster's metadata
    /// lists every node.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + within;
        for node in &self.nodes {
            while !port_open(SocketAddr::from(([127, 0, 0, 1], node.port))) {
                if Instant::now() > until {
                    bail!(
                        "Kafka node {} did not open port {}; see {}",
                        node.id,
                        node.port,
                        self.node_dir(node.id).join("server.log").display()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let bootstrap = self.bootstrap();
        let wanted = self.nodes.len();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let client: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()?;
            loop {
                let seen = client
                    .fetch_metadata(None, Duration::from_secs(2))
                    .map(|m| m.brokers().len())
                    .unwrap_or(0);
                if seen >= wanted {
                    return Ok(());
                }
                if Instant::now() > until {
                    bail!("the local Kafka at {bootstrap} lists {seen} of {wanted} brokers");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await?
    }

    /// SIGKILLs a node, as a crash would.
    pub fn kill(&self, id: u32) -> anyhow::Result<()> {
        let pid = self
            .pid(id)
            .with_context(|| format!("Kafka node {id} is not running"))?;
        signal(pid, "KILL")?;
        wait_gone(pid, Duration::from_secs(10));
        Ok(())
    }

    /// Stops every node (SIGTERM: a controlled shutdown), SIGKILLing any
    /// still running after 30 s.
    pub fn stop(&self) {
        let pids: Vec<u32> = self.nodes.iter().filter_map(|n| self.pid(n.id)).collect();
        for pid in &pids {
            let _ = signal(*pid, "TERM");
        }
        for pid in pids {
            if !wait_gone(pid, Duration::from_secs(30)) {
                let _ = signal(pid, "KILL");
                wait_gone(pid, Duration::from_secs(5));
            }
        }
    }
}

/// Kafka logs to `server.log` in each node's directory, warnings and up.
const LOG4J2: &str = "\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.server.name = org.apache.kafka.server
logger.server.level = INFO
";

/// The storage tool's arguments before the node's properties file. The id
/// is given as `--cluster-id=<id>`: an id may begin with `-` (one in 64 of
/// them), which `-t <id>` made the tool read as an option ("argument
/// --cluster-id/-t: expected one argument", a `.ci/run` that failed on
/// 2026-12-02).
fn format_args(cluster_id: &str) -> [String; 4] {
    [
        "format".into(),
        "--ignore-formatted".into(),
        format!("--cluster-id={cluster_id}"),
        "-c".into(),
    ]
}

/// A new cluster id that does not begin with `-`, as Kafka's own
/// `Uuid.randomUuid` draws them.
fn new_cluster_id(mut uuid: impl FnMut() -> uuid::Uuid) -> String {
    loop {
        let id = cluster_id(uuid());
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// A Kafka cluster id: the 16 bytes of a UUID in URL-safe base64, unpadded
/// (what `kafka-storage random-uuid` prints).
fn cluster_id(uuid: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid.as_bytes();
    let mut bits: u32 = 0;
    let mut len = 0;
    let mut out = String::with_capacity(22);
    for byte in bytes {
        bits = (bits << 8) | u32::from(*byte);
        len += 8;
        while len >= 6 {
            len -= 6;
            out.push(char::from(ALPHABET[((bits >> len) & 63) as usize]));
        }
    }
    if len > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - len)) & 63) as usize]));
    }
    out
}

/// True while `pid` runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("kill -{name} {pid} failed");
    }
    Ok(())
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_uuids_in_unpadded_url_safe_base64() {
        let uuid = uuid::Uuid::from_bytes([
            0x77, 0x1c, 0x1f, 0x3f, 0x7f, 0x2c, 0x4e, 0x9e, 0x84, 0x67, 0x55, 0xea, 0x16, 0x39,
            0xb8, 0xef,
        ]);
        // Python: base64.urlsafe_b64encode(bytes).rstrip(b'=')
        assert_eq!(cluster_id(uuid), "dxwfP38sTp6EZ1XqFjm47w");
        assert_eq!(cluster_id(uuid::Uuid::nil()), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn an_id_that_begins_with_a_dash_is_given_as_the_value_of_its_option() {
        // 0xfb: the first six bits are 62, `-` in the alphabet.
        let dashed = uuid::Uuid::from_bytes([0xfb; 16]);
        assert_eq!(cluster_id(dashed), "-_v7-_v7-_v7-_v7-_v7-w");
        assert_eq!(
            format_args(&cluster_id(dashed)),
            [
                "format",
                "--ignore-formatted",
                "--cluster-id=-_v7-_v7-_v7-_v7-_v7-w",
                "-c"
            ]
        );
        // New ids never begin with one.
        let mut drawn = vec![uuid::Uuid::nil(), dashed].into_iter().rev();
        assert_eq!(
            new_cluster_id(|| drawn.next().unwrap()),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
    }

    #[test]
    fn the_version_is_the_one_the_install_script_resolves() {
        let pom = include_str!("../../../../deploy/kafka/pom.xml");
        assert!(pom.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")));
    }

    #[test]
    fn three_nodes_replicate_three_times_with_two_in_sync() {
        let dir = std::env::temp_dir().join(format!("tally-kafka-{}", uuid::Uuid::new_v4()));
        let cluster = LocalKafka::create(&dir, 3, 29192).unwrap();
        assert_eq!(
            cluster.bootstrap(),
            "127.0.0.1:29192,127.0.0.1:29194,127.0.0.1:29196"
        );
        let props = cluster.properties(&cluster.nodes[1]);
        assert!(props.contains("node.id=2\n"));
        assert!(props.contains(
            "controller.quorum.voters=1@127.0.0.1:29193,2@127.0.0.1:29195,3@127.0.0.1:29197\n"
        ));
        assert!(props.contains("default.replication.factor=3\n"));
        assert!(props.contains("min.insync.replicas=2\n"));
        // The same directory describes the same cluster; another size is refused.
        assert_eq!(
            LocalKafka::create(&dir, 3, 29192).unwrap().cluster_id,
            cluster.cluster_id
        );
        assert!(LocalKafka::create(&dir, 1, 29192).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
