#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_platform::run_service(
        tally_rating::Application::build,
        tally_rating::Application::run_until_stopped,
    )
    .await
}
