//! IO plumbing shared by Tally's services. Domain rules live in `tally-domain`;
//! this crate only moves bytes in and out of PostgreSQL and Kafka.

pub mod auth;
pub mod binding_outbox;
pub mod bindings;
pub mod catalog;
pub mod composition;
pub mod config;
pub mod contracts;
pub mod counted;
pub mod db;
pub mod health;
pub mod http;
pub mod kafka;
pub mod onboarding;
pub mod openapi;
pub mod plans;
pub mod statements;
pub mod telemetry;
pub mod trace;

pub use config::Config;

/// Applies pending migrations (creating the database if needed) and creates
/// the topics: what a service needs before `Application::build`.
pub async fn prepare(config: &Config) -> anyhow::Result<()> {
    db::migrate(&config.database_url).await?;
    kafka::ensure_topics(config).await?;
    Ok(())
}

/// Resolves when the process receives Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// The whole `main` of service `name`'s binary: logs, traces, configuration from the
/// environment, migrations and topics, then `build`, the admin endpoints
/// (with `readiness`) and `run` until Ctrl-C or SIGTERM, which must end
/// within `TALLY_SHUTDOWN_TIMEOUT_SECS`.
pub async fn run_service<App, Built, Ran>(
    name: &str,
    build: impl FnOnce(Config) -> Built,
    readiness: impl FnOnce(&App) -> health::Readiness,
    run: impl FnOnce(App, tokio_util::sync::CancellationToken) -> Ran,
) -> anyhow::Result<()>
where
    Built: std::future::Future<Output = anyhow::Result<App>>,
    Ran: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    telemetry::init_logging();
    let _traces = trace::init(name)?;
    for (name, what) in [
        (
            "DATABASE_URL",
            "PostgreSQL (or DATABASE_URL_FILE, a file holding it)",
        ),
        ("KAFKA_BROKERS", "the Kafka bootstrap servers"),
    ] {
        if config::secret(name)?.is_none() {
            anyhow::bail!("{name} is not set: set it to {what}");
        }
    }
    let config = Config::from_env()?;
    prepare(&config).await?;
    let app = build(config.clone()).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let admin = match config.admin_addr {
        Some(addr) => Some(tokio::spawn(
            health::AdminServer::bind(addr, readiness(&app))
                .await?
                .serve(shutdown.clone()),
        )),
        None => None,
    };
    let mut running = tokio::spawn(run(app, shutdown.clone()));
    tokio::select! {
        () = shutdown_signal() => {}
        result = &mut running => {
            shutdown.cancel();
            return result?;
        }
    }
    tracing::info!("stopping: finishing the batch in hand");
    shutdown.cancel();
    match tokio::time::timeout(config.shutdown_timeout, running).await {
        Ok(result) => result??,
        Err(_) => anyhow::bail!(
            "did not stop within TALLY_SHUTDOWN_TIMEOUT_SECS ({} s)",
            config.shutdown_timeout.as_secs()
        ),
    }
    if let Some(admin) = admin {
        admin.await??;
    }
    Ok(())
}
