#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_platform::telemetry::init_logging();
    let config = tally_platform::Config::from_env()?;
    tally_platform::prepare(&config).await?;
    let app = tally_invoicing::Application::build(config).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tally_platform::shutdown_signal().await;
        trigger.cancel();
    });
    app.run_until_stopped(shutdown).await
}
