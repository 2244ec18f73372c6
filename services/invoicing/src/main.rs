#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tally_platform::run_service(
        "tally-invoicing",
        tally_invoicing::Application::build,
        tally_invoicing::Application::readiness,
        tally_invoicing::Application::run_until_stopped,
    )
    .await
}

/// mimalloc instead of glibc's malloc: `tally bench` under perf showed
/// glibc's arena bookkeeping (malloc_consolidate, unlink_chunk) among the
/// top symbols and per-thread arenas inflating resident memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
