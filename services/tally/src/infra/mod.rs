//! The embedded default: a local PostgreSQL and a local Apache Kafka, found
//! or started when `DATABASE_URL` / `KAFKA_BROKERS` are not given.
//! Production sets both and none of this runs.

pub mod kafka;
pub mod postgres;
pub mod tls;

use anyhow::bail;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

pub use kafka::LocalKafka;
pub use postgres::ensure_postgres;

/// What the embedded default started; stopped (and, when asked, its
/// directory removed) when dropped.
#[derive(Default)]
pub struct Embedded {
    kafka: Vec<(LocalKafka, bool)>,
}

impl Embedded {
    pub fn adopt(&mut self, kafka: LocalKafka) {
        self.kafka.push((kafka, false));
    }

    /// Like [`Embedded::adopt`], and the cluster's directory is removed
    /// once it stopped (a private broker of one run).
    pub fn adopt_private(&mut self, kafka: LocalKafka) {
        self.kafka.push((kafka, true));
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        for (kafka, remove) in &self.kafka {
            kafka.stop();
            if *remove {
                let _ = std::fs::remove_dir_all(&kafka.dir);
            }
        }
    }
}

/// Where the embedded default keeps its data: `TALLY_DATA_DIR` or `./.tally`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("TALLY_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".tally"))
}

/// Where installed tools live: `TALLY_CACHE_DIR` or `~/.cache/tally`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TALLY_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/tally")))
        .unwrap_or_else(|| PathBuf::from(".tally/cache"))
}

pub fn port_open(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// A port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_for_port(addr: SocketAddr, what: &str) -> anyhow::Result<()> {
    for _ in 0..1200 {
        if port_open(addr) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} did not start listening on {addr}")
}

/// `KAFKA_BROKERS`, or a broker already on 127.0.0.1:9092, or a new local
/// Apache Kafka there with its data under the data directory (stopped when
/// `embedded` is dropped).
pub async fn ensure_broker(embedded: &mut Embedded) -> anyhow::Result<String> {
    if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
        if !brokers.trim().is_empty() {
            return Ok(brokers);
        }
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], 9092));
    if !port_open(addr) {
        let dir = data_dir().join("kafka");
        tracing::info!(dir = %dir.display(), "starting the local Kafka");
        let kafka = LocalKafka::create(&dir, 1, 9092)?;
        // Adopted first: a node that starts but never gets ready is stopped too.
        embedded.adopt(kafka.clone());
        kafka.start().await?;
    }
    Ok(addr.to_string())
}
