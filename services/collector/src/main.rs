#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_platform::run_service(
        tally_collector::Application::build,
        tally_collector::Application::run_until_stopped,
    )
    .await
}
