//! The services under test as child processes, and posting to the collector.

use anyhow::{bail, Context};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tally_platform::Config;

/// A child `tally up --only <service>` process.
pub(super) struct ServiceProcess {
    pub(super) name: &'static str,
    child: Child,
}

impl ServiceProcess {
    pub(super) fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// CPU time (user + system) the process has used so far.
    pub(super) fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(self.child.id()).map(|(_, seconds)| seconds)
    }

    /// Sends SIGTERM (the service finishes its batch, commits and leaves
    /// its group) and does not wait: dropping it waits.
    pub(super) fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// SIGKILL, as a crash: nothing finished, its group not told.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command name of process `pid` and the CPU time (user + system) it
/// has used so far, from `/proc/<pid>/stat`.
pub(super) fn cpu_seconds_of(pid: u32) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, ticks) = parse_stat(&stat)?;
    Some((comm, ticks / clock_ticks_per_second()))
}

/// The command name (field 2) and user + system clock ticks (fields 14
/// and 15) of a `/proc/<pid>/stat` line. The name is in parentheses and
/// may hold spaces and parentheses itself: the fields are counted from
/// after its last `)`.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((comm, ticks))
}

/// `getconf CLK_TCK` (100 on Linux when it cannot be asked).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            // Killed (and reaped) already: its pid may be another's now.
            return;
        }
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The addresses a child process binds (0: any free port, not known to
/// the bench).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ports {
    pub(super) collector: u16,
    pub(super) api: u16,
    /// `/healthz`, `/readyz` and `/metrics` of the process.
    pub(super) admin: u16,
}

/// Starts `tally up --only <name>`; its log (with `TALLY_BENCH_LOG_DIR`)
/// is `<label>.log`.
pub(super) fn spawn(
    name: &'static str,
    label: &str,
    config: &Config,
    ports: Ports,
) -> anyhow::Result<ServiceProcess> {
    let exe = std::env::current_exe().context("locating the tally binary")?;
    let child = Command::new(exe)
        .args(["up", "--only", name])
        .env("DATABASE_URL", &config.database_url)
        .env("KAFKA_BROKERS", &config.kafka_brokers)
        .env("TALLY_TOPIC_PREFIX", &config.topic_prefix)
        .env("TALLY_GROUP_PREFIX", &config.group_prefix)
        .env(
            "TALLY_USAGE_PARTITIONS",
            config.usage_partitions.to_string(),
        )
        .env("TALLY_BATCH_MAX", config.batch_max.to_string())
        .env("TALLY_RATING_LANES", config.rating_lanes.to_string())
        .env(
            "TALLY_BATCH_WAIT_MS",
            config.batch_wait.as_millis().to_string(),
        )
        .env(
            "TALLY_COLLECTOR_ADDR",
            format!("127.0.0.1:{}", ports.collector),
        )
        .env("TALLY_API_ADDR", format!("127.0.0.1:{}", ports.api))
        .env("TALLY_ADMIN_ADDR", format!("127.0.0.1:{}", ports.admin))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("TALLY_BENCH_LOG_DIR") {
            // Each service's log in a file of its own, for diagnosis.
            Some(dir) => Stdio::from(std::fs::File::create(
                std::path::Path::new(&dir).join(format!("{label}.log")),
            )?),
            None => Stdio::inherit(),
        })
        .spawn()
        .with_context(|| format!("starting {label}"))?;
    Ok(ServiceProcess { name, child })
}

pub(super) async fn wait_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{base} did not become healthy within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: String,
) -> anyhow::Result<u64> {
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/cloudevents-batch+json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    if status.as_u16() != 202 {
        bail!("collector answered {status}: {body}");
    }
    Ok(body["accepted"].as_u64().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn a_stat_line_gives_its_name_and_user_plus_system_ticks() {
        // A name with a space and a parenthesis; utime 1234, stime 56.
        let line =
            "4242 (tally (up)) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 56 0 0 20 0 9 0 77 0 0";
        assert_eq!(parse_stat(line), Some(("tally (up)".to_owned(), 1290.0)));
        assert_eq!(parse_stat("4242 (postgres) S 1"), None);
    }
}
