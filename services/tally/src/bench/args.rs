//! `tally bench`'s options, and what `--smoke` makes of them.

use rust_decimal::Decimal;

/// What to run; `--smoke` shrinks everything to a quick exactness check.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Providers (the first is first-party, the others partners).
    #[arg(long, default_value_t = 4)]
    pub providers: usize,
    /// Customer accounts (USD), seeded in one statement (up to 1,000,000).
    #[arg(long, default_value_t = 1000)]
    pub accounts: usize,
    /// SKUs per provider (all providers' together up to 10,000), seeded in
    /// bulk; usage spreads over them.
    #[arg(long, default_value_t = 5)]
    pub skus: usize,
    /// Percent of the accounts with a contract (account `i` when `i % 100`
    /// is below it): a 12.5 % platform-funded discount of every line and
    /// a monthly commitment of `--commitment` USD, which the expected
    /// totals apply exactly.
    #[arg(long, default_value_t = 0)]
    pub contracts: u32,
    /// The monthly commitment's minimum net spend of a contract, USD.
    #[arg(long, default_value_t = Decimal::ONE_HUNDRED)]
    pub commitment: Decimal,
    /// Closed months stored before the run for every account: usage
    /// aggregates, a sealed statement, a finalized invoice with its lines
    /// (see `--lines`), and the account's seal through the run's month.
    #[arg(long, default_value_t = 0)]
    pub history_months: u32,
    /// Dedupe history stored before the run: this many earlier counted
    /// events in the dedupe set (`counted_events`; spread over the
    /// `--history-months`, else the past 12 months, over the bench's
    /// accounts and providers), as months of traffic would have left them.
    #[arg(long, default_value_t = 0)]
    pub history_events: u64,
    /// How usage spreads over accounts: 0 evenly, else Zipf with this
    /// exponent (account `a0` the busiest; 1.0 is the classic long tail).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// The SKUs of a provider one account uses at most (its statement's
    /// lines per provider); 0: any of them.
    #[arg(long, default_value_t = 0)]
    pub lines: usize,
    /// Events of the throughput run (ingest and end to end).
    #[arg(long, default_value_t = 5_000_000)]
    pub events: u64,
    /// Events produced to the `usage.ingest` topic after the HTTP run, in
    /// records of `batch-size` events (0: none).
    #[arg(long, default_value_t = 1_000_000)]
    pub kafka_events: u64,
    /// Events per HTTP batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Offered rate of the throughput run in events/s; 0 sends as fast as the collector takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Steady rate of the freshness run, events/s.
    #[arg(long, default_value_t = 10_000)]
    pub freshness_rate: u64,
    /// Length of the freshness run.
    #[arg(long, default_value_t = 30)]
    pub freshness_seconds: u64,
    /// Records for each raw ceiling (rdkafka produce/consume, PostgreSQL COPY).
    #[arg(long, default_value_t = 1_000_000)]
    pub ceiling_events: u64,
    /// Start a private single-node Apache Kafka with empty storage for the
    /// run (under the data directory, removed afterwards) instead of using
    /// the configured / embedded one.
    #[arg(long)]
    pub private_broker: bool,
    /// Give every account a promotional grant (all usage, ample balance,
    /// capped at 0.01 USD per period), so rating applies credits to every
    /// statement and writes its draws; each account's invoice is then due
    /// 0.01 less, which the exactness check expects.
    #[arg(long)]
    pub grants: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Append the report as one JSON line (with its knobs) to this file:
    /// the results file of a sweep (`deploy/bench-sweep.sh`).
    #[arg(long)]
    pub results: Option<std::path::PathBuf>,
    /// The database the bench creates (dropped first) on the server of
    /// `DATABASE_URL`.
    #[arg(long, default_value = "tally_bench")]
    pub database: String,
    /// A small run (20,000 events, 3 s of freshness; with `--churn` sent at
    /// 2,000 events/s) that checks exactness, not speed.
    #[arg(long)]
    pub smoke: bool,
    /// Rating processes, all in rating's consumer group, each with its own
    /// admin address; the report gives each one's events counted and
    /// events/s. `usage.events` and `billing.statements` have
    /// TALLY_USAGE_PARTITIONS partitions (8 by default); the bench refuses
    /// more instances than that.
    #[arg(long, default_value_t = 1)]
    pub rating_instances: usize,
    /// Invoicing processes, all in invoicing's consumer group (each also
    /// runs the closer; its seal markers are idempotent).
    #[arg(long, default_value_t = 1)]
    pub invoicing_instances: usize,
    /// During the throughput run, instances leave and join their groups:
    /// at 10 % of the events rated the oldest rating instance gets SIGTERM,
    /// at 50 % the oldest still running is SIGKILLed, and a new one starts
    /// 3 s after each; invoicing likewise at 30 % and 70 % when it has more
    /// than one instance. Each leave and join is printed; every invoice is
    /// still checked.
    #[arg(long)]
    pub churn: bool,
}

impl BenchArgs {
    pub(super) fn effective(&self) -> BenchArgs {
        if !self.smoke {
            return self.clone();
        }
        BenchArgs {
            providers: 3,
            accounts: 50,
            skus: 3,
            zipf: self.zipf,
            lines: self.lines,
            history_events: self.history_events.min(100_000),
            history_months: self.history_months.min(3),
            contracts: self.contracts,
            commitment: self.commitment,
            events: 20_000,
            kafka_events: 5_000,
            batch_size: 500,
            concurrency: 4,
            // With churn, 10 s of steady flow, so instances leave and
            // join while events arrive (unpaced, 20,000 are rated in two
            // or three batches).
            rate: if self.churn { 2_000 } else { 0 },
            freshness_rate: 2_000,
            freshness_seconds: 3,
            ceiling_events: 20_000,
            json: self.json.clone(),
            results: self.results.clone(),
            database: self.database.clone(),
            private_broker: self.private_broker,
            grants: self.grants,
            smoke: true,
            rating_instances: self.rating_instances,
            invoicing_instances: self.invoicing_instances,
            churn: self.churn,
        }
    }
}
