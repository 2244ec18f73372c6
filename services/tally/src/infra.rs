//! The embedded default: a local PostgreSQL and a local Kafka-compatible
//! broker (Tansu), found or started when `DATABASE_URL` / `KAFKA_BROKERS`
//! are not given. Production sets both and none of this runs.

use anyhow::{bail, Context};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Tansu version the project installs (deploy/install-broker.sh).
pub const TANSU_VERSION: &str = "0.6.0";

/// Processes started for the embedded default; stopped when dropped.
#[derive(Default)]
pub struct Embedded {
    children: Vec<Child>,
}

impl Embedded {
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}

/// Where the embedded default keeps its data: `TALLY_DATA_DIR` or `./.tally`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("TALLY_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".tally"))
}

fn cache_dir() -> PathBuf {
    std::env::var_os("TALLY_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tally")))
        .unwrap_or_else(|| PathBuf::from(".tally/cache"))
}

/// The Tansu binary: `TALLY_BROKER_BIN`, the project's cache, or `tansu` on PATH.
pub fn broker_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TALLY_BROKER_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let cached = cache_dir().join(format!("tansu-{TANSU_VERSION}/bin/tansu"));
    if cached.exists() {
        return Ok(cached);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("tansu"))
            .find(|p| p.exists())
    }) {
        return Ok(found);
    }
    bail!(
        "the local broker (Tansu {TANSU_VERSION}) is not installed: run `bash deploy/install-broker.sh` \
         (or set KAFKA_BROKERS to a running Kafka)"
    )
}

pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// A port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_port(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if port_open(addr) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} did not start listening on {addr}")
}

/// How the broker keeps its data.
#[derive(Debug, Clone)]
pub enum BrokerStorage {
    /// Lost on restart; fastest. For tests.
    Memory,
    /// A SQLite file in this directory; survives restarts.
    Sqlite(PathBuf),
}

/// Starts Tansu on `port`, advertised as 127.0.0.1.
pub async fn start_broker(port: u16, storage: &BrokerStorage) -> anyhow::Result<Child> {
    let bin = broker_binary()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(&bin);
    cmd.arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    match storage {
        BrokerStorage::Memory => {
            cmd.args(["--storage-engine", "memory://tansu/"]);
        }
        BrokerStorage::Sqlite(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            // Tansu takes the SQLite path relative to its working directory.
            cmd.current_dir(dir)
                .args(["--storage-engine", "sqlite://tansu.db"]);
        }
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), "the broker").await?;
    Ok(child)
}

/// `KAFKA_BROKERS`, or a broker already on 127.0.0.1:9092, or a new Tansu
/// there with SQLite storage under the data directory.
pub async fn ensure_broker(embedded: &mut Embedded) -> anyhow::Result<String> {
    if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
        if !brokers.trim().is_empty() {
            return Ok(brokers);
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], 9092));
    if !port_open(addr) {
        let dir = data_dir().join("broker");
        tracing::info!(dir = %dir.display(), "starting the local broker");
        embedded.adopt(start_broker(9092, &BrokerStorage::Sqlite(dir)).await?);
    }
    Ok(addr.to_string())
}

/// `DATABASE_URL`, or the server on 127.0.0.1:5432 (started through the
/// Debian cluster tools when installed but stopped), or a private cluster
/// initialised under the data directory (on port 5439).
pub async fn ensure_postgres() -> anyhow::Result<String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.trim().is_empty() {
            return Ok(url);
        }
    }
    let system = SocketAddr::from(([127, 0, 0, 1], 5432));
    if port_open(system) || start_system_postgres(system).await {
        return Ok("postgres://postgres@127.0.0.1:5432/tally".into());
    }
    let dir = std::fs::canonicalize(data_dir())
        .or_else(|_| {
            std::fs::create_dir_all(data_dir())?;
            std::fs::canonicalize(data_dir())
        })?
        .join("postgres");
    start_private_postgres(&dir, 5439).await?;
    Ok("postgres://postgres@127.0.0.1:5439/tally".into())
}

/// Starts the Debian clusters (`pg_ctlcluster`), if any; true once `addr` answers.
async fn start_system_postgres(addr: SocketAddr) -> bool {
    let Ok(versions) = std::fs::read_dir("/etc/postgresql") else {
        return false;
    };
    for version in versions.filter_map(Result::ok) {
        let _ = Command::new("pg_ctlcluster")
            .arg("--skip-systemctl-redirect")
            .arg(version.file_name())
            .args(["main", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    wait_for_port(addr, "PostgreSQL").await.is_ok()
}

fn find_pg_tool(tool: &str) -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin").join(tool))
                .collect()
        })
        .unwrap_or_default();
    candidates.sort();
    candidates.reverse();
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|p| p.join(tool)));
    }
    candidates
        .into_iter()
        .find(|p| p.exists())
        .with_context(|| {
            format!("PostgreSQL's {tool} was not found: install PostgreSQL or set DATABASE_URL")
        })
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` then.
fn pg_command(tool: &Path, dir: &Path) -> anyhow::Result<Command> {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false);
    if is_root {
        std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()?;
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(tool);
        Ok(cmd)
    } else {
        Ok(Command::new(tool))
    }
}

async fn start_private_postgres(dir: &Path, port: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    if !dir.join("PG_VERSION").exists() {
        tracing::info!(dir = %dir.display(), "initialising a private PostgreSQL cluster");
        let status = pg_command(&find_pg_tool("initdb")?, dir)?
            .args(["-D"])
            .arg(dir)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdout(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            bail!("initdb failed for {}", dir.display());
        }
    }
    if port_open(SocketAddr::from(([127, 0, 0, 1], port))) {
        return Ok(());
    }
    let log = dir.join("server.log");
    let status = pg_command(&find_pg_tool("pg_ctl")?, dir)?
        .args(["-D"])
        .arg(dir)
        .args(["-l"])
        .arg(&log)
        .args([
            "-o",
            &format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {}",
                dir.display()
            ),
            "-w",
            "start",
        ])
        .stdout(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("PostgreSQL did not start; see {}", log.display());
    }
    Ok(())
}
