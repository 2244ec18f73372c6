#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_platform::run_service(
        tally_invoicing::Application::build,
        tally_invoicing::Application::run_until_stopped,
    )
    .await
}
