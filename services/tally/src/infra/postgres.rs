//! The embedded default's PostgreSQL: a server on 127.0.0.1:5432 that lets
//! `postgres` in without a password, or else a private cluster that
//! `initdb` makes under the data directory (port 5439, local trust).

use anyhow::{bail, Context};
use sqlx::Connection;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

use super::{data_dir, port_open};

/// `DATABASE_URL`, or the server on 127.0.0.1:5432 when `postgres` may use
/// it without a password, or a private cluster initialised under the data
/// directory (on port 5439).
pub async fn ensure_postgres() -> anyhow::Result<String> {
    if let Some(url) = tally_platform::config::secret("DATABASE_URL")? {
        return Ok(url);
    }
    let system = "postgres://postgres@127.0.0.1:5432/postgres";
    if port_open(SocketAddr::from(([127, 0, 0, 1], 5432))) {
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(system)).await;
        match attempt {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok("postgres://postgres@127.0.0.1:5432/tally".into());
            }
            Ok(Err(err)) => tracing::info!(
                error = %err,
                "the PostgreSQL on 127.0.0.1:5432 does not let postgres in without a password; \
                 using a private cluster (set DATABASE_URL to use that server)"
            ),
            Err(_) => tracing::info!(
                "the PostgreSQL on 127.0.0.1:5432 did not answer; using a private cluster"
            ),
        }
    }
    let url = "postgres://postgres@127.0.0.1:5439/tally";
    if port_open(SocketAddr::from(([127, 0, 0, 1], 5439))) {
        // The private cluster already runs (started by an earlier command,
        // perhaps from another clone): nothing to initialise.
        return Ok(url.into());
    }
    let mut dir = std::fs::canonicalize(data_dir())
        .or_else(|_| {
            std::fs::create_dir_all(data_dir())?;
            std::fs::canonicalize(data_dir())
        })?
        .join("postgres");
    if is_root() && !postgres_may_enter(&dir) {
        // As root the cluster belongs to `postgres`, which cannot reach a
        // clone inside a private directory (`mktemp -d`): keep it where it can.
        dir = PathBuf::from(ROOT_CLUSTER_DIR);
        tracing::info!(dir = %dir.display(), "the clone is private to root; the PostgreSQL cluster lives outside it");
    }
    start_private_postgres(&dir, 5439).await?;
    Ok(url.into())
}

/// The embedded default's cluster when root runs Tally from a directory
/// that `postgres` cannot enter.
const ROOT_CLUSTER_DIR: &str = "/var/lib/tally/postgres";

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Whether `postgres` can reach `dir`'s parent (it owns `dir` itself).
fn postgres_may_enter(dir: &Path) -> bool {
    let parent = dir.parent().unwrap_or(dir);
    std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(parent)
        .current_dir("/")
        .status()
        .is_ok_and(|s| s.success())
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
            format!(
                "PostgreSQL's {tool} was not found: run `bash deploy/install-postgres.sh` \
                 (Debian's server packages) or set DATABASE_URL"
            )
        })
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` then.
fn pg_command(tool: &Path, dir: &Path) -> anyhow::Result<Command> {
    if is_root() {
        std::process::Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()?;
        let mut cmd = Command::new("runuser");
        // From `/`: `postgres` may not enter the current directory.
        cmd.args(["-u", "postgres", "--"])
            .arg(tool)
            .current_dir("/");
        Ok(cmd)
    } else {
        Ok(Command::new(tool))
    }
}

/// Initialises (once) and starts a private cluster in `dir` on `port`,
/// listening on 127.0.0.1 only, trusting local connections.
pub async fn start_private_postgres(dir: &Path, port: u16) -> anyhow::Result<()> {
    start_private(dir, port, None).await
}

/// Like [`start_private_postgres`], with `ssl=on` and the certificates of
/// `certs`, refusing every TCP connection that does not use TLS.
pub async fn start_private_postgres_tls(
    dir: &Path,
    port: u16,
    certs: &super::tls::Certs,
) -> anyhow::Result<()> {
    start_private(dir, port, Some(certs)).await
}

async fn start_private(
    dir: &Path,
    port: u16,
    certs: Option<&super::tls::Certs>,
) -> anyhow::Result<()> {
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
    let pg_ctl = find_pg_tool("pg_ctl")?;
    let mut options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {}",
        dir.display()
    );
    // Statement statistics for `tally bench`'s profile, where the server
    // has the library (Debian's server package does).
    if let Some(lib) = pg_ctl.parent().and_then(Path::parent) {
        if lib.join("lib/pg_stat_statements.so").exists() {
            options.push_str(" -c shared_preload_libraries=pg_stat_statements");
        }
    }
    if let Some(certs) = certs {
        // The server reads its key only when only its owner may (the
        // cluster's directory is handed to `postgres` below).
        std::fs::copy(&certs.cert, dir.join("server.crt"))?;
        std::fs::copy(&certs.key, dir.join("server.key"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )?;
        std::fs::write(
            dir.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )?;
        options.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
    }
    let log = dir.join("server.log");
    let status = pg_command(&pg_ctl, dir)?
        .args(["-D"])
        .arg(dir)
        .args(["-l"])
        .arg(&log)
        .args(["-o", &options, "-w", "start"])
        .stdout(Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("PostgreSQL did not start; see {}", log.display());
    }
    Ok(())
}

/// Stops the private cluster in `dir`: `fast` ends sessions and shuts down
/// cleanly, `immediate` stops at once as a crash would (recovery at the next
/// start).
pub async fn stop_private_postgres(dir: &Path, mode: &str) -> anyhow::Result<()> {
    let status = pg_stop(dir, mode)?.status().await?;
    if !status.success() {
        bail!("pg_ctl stop -m {mode} failed for {}", dir.display());
    }
    Ok(())
}

/// Like [`stop_private_postgres`], blocking (for a `Drop`); a cluster that
/// is not running is left as it is.
pub fn stop_private_postgres_now(dir: &Path, mode: &str) {
    if let Ok(mut cmd) = pg_stop(dir, mode) {
        let _ = cmd.as_std_mut().stderr(Stdio::null()).status();
    }
}

fn pg_stop(dir: &Path, mode: &str) -> anyhow::Result<Command> {
    let mut cmd = pg_command(&find_pg_tool("pg_ctl")?, dir)?;
    cmd.args(["-D"])
        .arg(dir)
        .args(["-m", mode, "-w", "stop"])
        .stdout(Stdio::null());
    Ok(cmd)
}
