//! IO plumbing shared by Tally's services. Domain rules live in `tally-domain`;
//! this crate only moves bytes in and out of PostgreSQL and Kafka.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod db;
pub mod kafka;
pub mod onboarding;
pub mod telemetry;

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

/// The whole `main` of a service binary: logs, configuration from the
/// environment, migrations and topics, then `build` and `run` until Ctrl-C
/// or SIGTERM.
pub async fn run_service<App, Built, Ran>(
    build: impl FnOnce(Config) -> Built,
    run: impl FnOnce(App, tokio_util::sync::CancellationToken) -> Ran,
) -> anyhow::Result<()>
where
    Built: std::future::Future<Output = anyhow::Result<App>>,
    Ran: std::future::Future<Output = anyhow::Result<()>>,
{
    telemetry::init_logging();
    let config = Config::from_env()?;
    prepare(&config).await?;
    let app = build(config).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    run(app, shutdown).await
}
