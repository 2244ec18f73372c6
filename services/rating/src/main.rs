#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_platform::run_service(
        "tally-rating",
        tally_rating::Application::build,
        tally_rating::Application::readiness,
        tally_rating::Application::run_until_stopped,
    )
    .await
}

/// mimalloc instead of glibc's malloc: `tally bench` under perf showed
/// glibc's arena bookkeeping (malloc_consolidate, unlink_chunk) among the
/// top symbols and per-thread arenas inflating resident memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
