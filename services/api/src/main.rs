#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_platform::run_service(
        "tally-api",
        tally_api::Application::build,
        tally_api::Application::readiness,
        tally_api::Application::run_until_stopped,
    )
    .await
}

/// mimalloc instead of glibc's malloc, as in the other services.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
