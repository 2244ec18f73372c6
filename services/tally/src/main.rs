use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use rust_decimal::Decimal;
use tally::infra::Embedded;
use tally::up::{self, Service};
use tally_domain::{Aggregation, AnchorDay, Period, PriceBook, PriceModel, ProviderKind};
use tokio_util::sync::CancellationToken;

/// Tally: unified billing and metering for a platform and its partners.
///
/// Commands use DATABASE_URL and KAFKA_BROKERS. With --embedded (always for
/// `demo` and `bench`), what they do not name is the embedded default:
/// PostgreSQL on 127.0.0.1:5432 (or a private cluster under .tally/) and a
/// local Apache Kafka on 127.0.0.1:9092, started if none is running.
#[derive(Parser)]
#[command(name = "tally", version)]
struct Cli {
    /// Use (and start, if none runs) a local PostgreSQL and Kafka for what
    /// DATABASE_URL / KAFKA_BROKERS do not name. For development, never production.
    #[arg(long, global = true)]
    embedded: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector, rating, invoicing and the API in this process.
    Up {
        /// Run only these services (comma-separated: collector,rating,invoicing,api).
        #[arg(long, value_delimiter = ',')]
        only: Vec<Service>,
    },
    /// Seed a demo catalog, send usage through the HTTP collector and print the combined bills.
    Demo {
        /// How many distinct usage events to send.
        #[arg(long, default_value_t = 3000)]
        events: usize,
    },
    /// Drive the pipeline (its services as separate processes) and measure
    /// ingest, end-to-end throughput with exact totals, freshness, the raw
    /// broker and PostgreSQL ceilings, and each service's peak memory.
    Bench(tally::bench::BenchArgs),
    /// Print the markdown growth tables of a sweep's results file (the
    /// JSON lines of `tally bench --results`; see deploy/bench-sweep.sh).
    BenchTable {
        /// The results file; its first line is the base run.
        results: std::path::PathBuf,
    },
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// List the dead letters of `usage.events.dlq` not yet replayed, and put
    /// their events back on `usage.events` once the cause is fixed.
    DlqReplay {
        /// Only dead letters with these codes (e.g. no_price); all when absent.
        #[arg(long, value_delimiter = ',')]
        code: Vec<String>,
        /// List what would be replayed; replay nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Import usage a provider missed sending, from NDJSON (one CloudEvent a
    /// line) or CSV files (columns id, account, sku, quantity, time and
    /// dimension.<name>; .gz too): every line passes the collector's rules,
    /// accepted events go to usage.events, refused lines to the report.
    /// Safe to run again: each event is billed once.
    Import {
        /// The provider whose usage this is.
        #[arg(long)]
        provider: String,
        /// The report of refused lines (CSV: file, line, id, code, message).
        #[arg(long, default_value = "import-refused.csv")]
        report: std::path::PathBuf,
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Create a provider (prints its API key once).
    CreateProvider {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// first_party or partner
        #[arg(long, default_value = "partner")]
        kind: String,
        /// The platform's share of a partner's list amounts, in percent.
        #[arg(long, value_parser = exact_decimal)]
        platform_fee_pct: Option<Decimal>,
        /// Take its usage from the `usage.ingest` Kafka topic too (off by default).
        #[arg(long)]
        kafka_ingest: bool,
        /// How the platform settles with it when it is also a customer:
        /// gross (its settlement in full, its own invoices paid separately)
        /// or net (one payment of the difference).
        #[arg(long, default_value = "gross", value_parser = ["gross", "net"])]
        settlement_mode: String,
    },
    /// Set how the platform settles with a provider that is also its
    /// customer: gross or net of its own invoices.
    SetSettlementMode {
        #[arg(long)]
        provider: String,
        #[arg(long, value_parser = ["gross", "net"])]
        mode: String,
    },
    /// Allow or stop a provider's usage records on the `usage.ingest` Kafka topic.
    SetKafkaIngest {
        #[arg(long)]
        provider: String,
        /// true to take its records, false to refuse them (`kafka_ingest_not_allowed`).
        #[arg(long, action = clap::ArgAction::Set)]
        allowed: bool,
    },
    /// Require (or stop requiring) that each usage event of a provider names
    /// an active binding of its account (`resource`); refused `not_bound` otherwise.
    SetRequiresBinding {
        #[arg(long)]
        provider: String,
        #[arg(long, action = clap::ArgAction::Set)]
        required: bool,
    },
    /// Create a customer account (prints its customer token once).
    CreateAccount {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        currency: String,
        /// The day of the month (1 to 28) its billing periods start on.
        #[arg(long, default_value_t = 1)]
        billing_anchor_day: u32,
        /// Make it this provider's own billing account (a provider as a
        /// customer of other providers; its provider key reads the invoices).
        #[arg(long)]
        provider: Option<String>,
    },
    /// Create a SKU owned by a provider.
    CreateSku {
        #[arg(long)]
        id: String,
        #[arg(long)]
        provider: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "unit")]
        unit: String,
        /// sum, count, max, latest or unique_count.
        #[arg(long, default_value = "sum")]
        aggregation: String,
        /// The dimension whose distinct values unique_count counts.
        #[arg(long)]
        dimension: Option<String>,
        /// The platform's markup on the list price, in percent.
        #[arg(long, value_parser = exact_decimal)]
        markup_pct: Option<Decimal>,
    },
    /// Add a price version for a SKU in one currency: a per-unit price, or a
    /// full price book as JSON (tiers, package, free units, minimum, fee).
    SetPrice {
        #[arg(long)]
        sku: String,
        #[arg(long)]
        currency: String,
        #[arg(
            long,
            conflicts_with = "price_book",
            required_unless_present = "price_book",
            value_parser = exact_decimal
        )]
        unit_price: Option<Decimal>,
        /// e.g. '{"model":"graduated","tiers":[{"up_to":"100","unit_price":"0.1"},{"unit_price":"0.05"}]}'
        #[arg(long)]
        price_book: Option<String>,
        /// RFC 3339; defaults to now.
        #[arg(long)]
        effective_from: Option<DateTime<Utc>>,
    },
    /// Create an admin or finance API key (printed once).
    CreateKey {
        #[arg(long)]
        role: String,
    },
    /// Start or stop the local PostgreSQL and Apache Kafka that the tests and
    /// developers use (not for production: there, set DATABASE_URL and
    /// KAFKA_BROKERS). Prints `NAME=value` lines for the shell.
    #[command(subcommand)]
    Local(Local),
    /// Print the OpenAPI document of every Tally HTTP API, generated from the
    /// code (the one the API serves at /openapi.json). schemas/openapi.json
    /// is its output: `tally openapi > schemas/openapi.json`.
    Openapi,
    /// Check a month's identity, per currency, over its finalized invoices:
    /// invoiced (subtotals less credit notes) = platform revenue + partner
    /// settlements + credits applied. Exits non-zero with the difference
    /// (and any invoice whose header disagrees with its lines) if it fails.
    Reconcile {
        /// The month whose periods' invoices to check, as YYYY-MM.
        #[arg(long)]
        period: String,
        /// Print the reconciliation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The dedupe window's partitions and the counted events they keep.
    #[command(subcommand)]
    Dedupe(Dedupe),
}

#[derive(Subcommand)]
enum Dedupe {
    /// Create the next partition and drop every partition out of the dedupe
    /// window now, then delete the counted events of the periods that ended
    /// before the oldest time kept (what rating does every
    /// TALLY_DEDUPE_PRUNE_EVERY_SECS); prints what it did and the partitions
    /// kept.
    Prune,
}

#[derive(Subcommand)]
enum Local {
    /// Find or start the embedded default's PostgreSQL; prints DATABASE_URL.
    Postgres,
    /// Start a local Apache Kafka in KRaft mode whose nodes keep running
    /// after this command (each node is broker and controller); prints
    /// KAFKA_BROKERS.
    Kafka {
        /// The cluster's directory: its configuration, data, logs and pids.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// How many nodes (3 gives replication factor 3, min.insync.replicas 2).
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        /// The first node's client port; node N listens on port + 2(N-1),
        /// its controller one above.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Also a SASL_SSL listener on this port (one node only): SCRAM-SHA-256
        /// user `tally`, certificates of a local CA; see DIR/cluster.json.
        #[arg(long)]
        secure_port: Option<u16>,
    },
    /// Stop the local Apache Kafka in this directory.
    StopKafka {
        #[arg(long)]
        dir: std::path::PathBuf,
    },
    /// Drop the databases a test run made on DATABASE_URL's server (those
    /// named `tally_*_r<RUN>_*`, made while TALLY_TEST_RUN was RUN).
    DropTestDatabases {
        #[arg(long)]
        run: String,
    },
}

async fn local(command: Local) -> anyhow::Result<()> {
    match command {
        Local::Postgres => {
            let url = tally::infra::ensure_postgres().await?;
            println!("DATABASE_URL={}", shell_quoted(&url));
        }
        Local::Kafka {
            dir,
            nodes,
            port,
            secure_port,
        } => {
            let mut kafka = tally::infra::LocalKafka::create(&dir, nodes, port)?;
            if let Some(secure) = secure_port {
                kafka = kafka.with_secure_listener(secure)?;
            }
            kafka.start().await?;
            println!("KAFKA_BROKERS={}", shell_quoted(&kafka.bootstrap()));
        }
        Local::StopKafka { dir } => tally::infra::LocalKafka::open(&dir)?.stop(),
        Local::DropTestDatabases { run } => {
            let url = tally_platform::config::secret("DATABASE_URL")?
                .ok_or_else(|| anyhow::anyhow!("DATABASE_URL is not set"))?;
            let dropped = tally_platform::db::drop_test_databases(&url, &run).await?;
            println!("dropped {dropped} test databases of run {run}");
        }
    }
    Ok(())
}

/// A decimal option, read exactly (a 29th decimal place is refused, not
/// rounded away).
fn exact_decimal(text: &str) -> Result<Decimal, String> {
    tally_domain::input::parse_exact(text).map_err(|e| e.to_string())
}

/// `value` in single quotes, for `eval` in a shell.
fn shell_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

#[tokio::main]
async fn main() {
    tally_platform::telemetry::init_logging();
    let cli = Cli::parse();
    if let Err(err) = run(cli).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Local(command) = cli.command {
        return local(command).await;
    }
    if let Command::BenchTable { results } = &cli.command {
        let text = std::fs::read_to_string(results)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", results.display()))?;
        print!("{}", tally::bench::table::growth_table(&text)?);
        return Ok(());
    }
    if let Command::Openapi = cli.command {
        print!("{}", tally_api::openapi::text());
        return Ok(());
    }
    let mut embedded = Embedded::default();
    let config = if cli.embedded || matches!(cli.command, Command::Demo { .. } | Command::Bench(_))
    {
        // A bench on a private broker needs no other.
        let broker = !matches!(&cli.command, Command::Bench(args) if args.private_broker);
        tally::embedded_config(&mut embedded, broker).await?
    } else {
        let kafka = matches!(
            cli.command,
            Command::Up { .. } | Command::DlqReplay { .. } | Command::Import { .. }
        );
        tally::explicit_config(kafka)?
    };
    match cli.command {
        Command::Up { only } => {
            let services = if only.is_empty() {
                Service::ALL.to_vec()
            } else {
                only
            };
            let service = match services.as_slice() {
                [one] => format!("tally-{}", one.name()),
                _ => "tally".to_owned(),
            };
            let _traces = tally_platform::trace::init(&service)?;
            let shutdown = CancellationToken::new();
            let running = up::start(&config, &services, shutdown.clone()).await?;
            if let Some(url) = running.collector_url() {
                println!("collector  {url}");
            }
            if let Some(url) = running.api_url() {
                println!("api        {url}");
            }
            if let Some(url) = running.admin_url() {
                println!("admin      {url}  (/healthz /readyz /metrics)");
            }
            let stopped = running.wait();
            tokio::pin!(stopped);
            tokio::select! {
                () = tally_platform::shutdown_signal() => {}
                result = &mut stopped => return result,
            }
            tracing::info!("stopping: finishing the batches in hand");
            shutdown.cancel();
            // The services have this long to finish, commit and leave their
            // groups; then `tally` exits non-zero (the embedded Kafka, if
            // any, is still stopped on the way out).
            let deadline = config.shutdown_timeout;
            tokio::time::timeout(deadline, stopped).await.map_err(|_| {
                anyhow::anyhow!(
                    "did not stop within TALLY_SHUTDOWN_TIMEOUT_SECS ({} s)",
                    deadline.as_secs()
                )
            })?
        }
        Command::Demo { events } => tally::demo::run(config, events).await,
        Command::Bench(args) => tally::bench::run(config, &args).await.map(|_| ()),
        Command::Import {
            provider,
            report,
            files,
        } => {
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&report)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", report.display()))?,
            );
            let bar = indicatif::ProgressBar::new(tally::import::total_bytes(&files));
            bar.set_style(indicatif::ProgressStyle::with_template(
                "{bar:30} {percent:>3}% {msg} ETA {eta}",
            )?);
            let started = std::time::Instant::now();
            let done = tally::import::import(&config, &provider, &files, &mut out, |t, read| {
                bar.set_position(read);
                bar.set_message(format!(
                    "{} accepted, {} refused, {:.0} events/s",
                    t.accepted,
                    t.refused,
                    t.lines as f64 / started.elapsed().as_secs_f64().max(1e-9)
                ));
            })
            .await?;
            bar.finish_and_clear();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "imported {} lines in {seconds:.1} s ({:.0} events/s): {} accepted, {} refused (listed in {})",
                done.lines,
                done.lines as f64 / seconds.max(1e-9),
                done.accepted,
                done.refused,
                report.display()
            );
            Ok(())
        }
        Command::DlqReplay { code, dry_run } => {
            let report =
                tally::dlq::replay(&config, &code, dry_run, std::time::Duration::from_secs(3))
                    .await?;
            println!(
                "{} dead letter(s) seen, {} {}, {} without an event",
                report.seen,
                report.replayed,
                if dry_run {
                    "would be replayed"
                } else {
                    "replayed"
                },
                report.unreplayable
            );
            Ok(())
        }
        command => {
            tally_platform::db::migrate(&config.database_url).await?;
            let pool = tally_platform::db::connect(&config.database_url, 2).await?;
            match command {
                Command::Migrate => {
                    println!("migrations applied to {}", redact(&config.database_url))
                }
                Command::CreateProvider {
                    id,
                    name,
                    kind,
                    platform_fee_pct,
                    kafka_ingest,
                    settlement_mode,
                } => {
                    let kind = ProviderKind::parse(&kind)
                        .context("kind must be first_party or partner")?;
                    let key = tally::admin::create_provider(&pool, &id, &name, kind).await?;
                    if let Some(pct) = platform_fee_pct {
                        tally::admin::set_platform_fee(&pool, &id, pct).await?;
                    }
                    if kafka_ingest {
                        tally::admin::set_kafka_ingest(&pool, &id, true).await?;
                    }
                    tally::admin::set_settlement_mode(&pool, &id, &settlement_mode).await?;
                    println!("provider {id} created; API key (shown once): {key}");
                }
                Command::SetSettlementMode { provider, mode } => {
                    tally::admin::set_settlement_mode(&pool, &provider, &mode).await?;
                    println!("provider {provider} is settled {mode}");
                }
                Command::SetKafkaIngest { provider, allowed } => {
                    tally::admin::set_kafka_ingest(&pool, &provider, allowed).await?;
                    let verb = if allowed { "takes" } else { "refuses" };
                    println!("usage.ingest {verb} records of provider {provider}");
                }
                Command::SetRequiresBinding { provider, required } => {
                    tally::admin::set_requires_binding(&pool, &provider, required).await?;
                    let verb = if required {
                        "requires"
                    } else {
                        "does not require"
                    };
                    println!("provider {provider} {verb} a binding for each usage event");
                }
                Command::CreateAccount {
                    id,
                    name,
                    currency,
                    billing_anchor_day,
                    provider,
                } => {
                    let anchor = AnchorDay::new(billing_anchor_day)?;
                    let key = match &provider {
                        Some(provider) => {
                            tally::admin::create_provider_account(
                                &pool, &id, &name, &currency, provider,
                            )
                            .await?
                        }
                        None => tally::admin::create_account(&pool, &id, &name, &currency).await?,
                    };
                    tally::admin::set_billing_anchor(&pool, &id, anchor).await?;
                    if let Some(provider) = &provider {
                        println!("account {id} is provider {provider}'s own billing account");
                    }
                    println!("account {id} created; customer token (shown once): {key}");
                }
                Command::CreateSku {
                    id,
                    provider,
                    name,
                    unit,
                    aggregation,
                    dimension,
                    markup_pct,
                } => {
                    let aggregation = Aggregation::parse(&aggregation, dimension.as_deref())?;
                    tally::admin::create_sku(&pool, &id, &provider, &name, &unit).await?;
                    tally::admin::set_aggregation(&pool, &id, &aggregation).await?;
                    if let Some(pct) = markup_pct {
                        tally::admin::set_markup(&pool, &id, pct).await?;
                    }
                    println!("sku {id} created");
                }
                Command::SetPrice {
                    sku,
                    currency,
                    unit_price,
                    price_book,
                    effective_from,
                } => {
                    let from = effective_from.unwrap_or_else(Utc::now);
                    let book: PriceBook = match (unit_price, price_book) {
                        (Some(p), _) => PriceModel::per_unit(p)?.into(),
                        (None, Some(json)) => {
                            serde_json::from_str(&json).context("--price-book")?
                        }
                        (None, None) => anyhow::bail!("give --unit-price or --price-book"),
                    };
                    let id =
                        tally::admin::set_price_book(&pool, &sku, &currency, &book, from).await?;
                    println!(
                        "price {id}: {sku} in {currency} from {}: {}",
                        from.to_rfc3339(),
                        serde_json::to_string(&book)?
                    );
                }
                Command::CreateKey { role } => {
                    let key = tally::admin::create_staff_key(&pool, &role).await?;
                    println!("{role} key (shown once): {key}");
                }
                Command::Reconcile { period, json } => {
                    let month = Period::parse_month(&period)?;
                    let mut conn = pool.acquire().await?;
                    let report =
                        tally_api::finance::settlement::reconcile(&mut conn, month).await?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&report)?);
                    } else {
                        print!("{}", tally::admin::reconciliation_text(&report));
                    }
                    if !report.holds() {
                        anyhow::bail!("{period} does not reconcile");
                    }
                }
                Command::Dedupe(Dedupe::Prune) => {
                    let window = config.dedupe_window();
                    let now = chrono::Utc::now();
                    let pruned = tally_rating::dedupe::prune(&pool, &window, now).await?;
                    let mut conn = pool.acquire().await?;
                    let kept = tally_rating::dedupe::partitions(&mut conn).await?;
                    print!(
                        "{}",
                        tally::admin::dedupe_text(&window, now, &pruned, &kept)
                    );
                }
                Command::Up { .. }
                | Command::Demo { .. }
                | Command::Bench(_)
                | Command::BenchTable { .. }
                | Command::DlqReplay { .. }
                | Command::Import { .. }
                | Command::Local(_)
                | Command::Openapi => {
                    unreachable!("handled above")
                }
            }
            Ok(())
        }
    }
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// mimalloc instead of glibc's malloc: `tally bench` under perf showed
/// glibc's arena bookkeeping (malloc_consolidate, unlink_chunk) among the
/// top symbols and per-thread arenas inflating resident memory. Built with
/// `--features system-allocator`, the binary keeps glibc's, so a heap
/// profiler that hooks `malloc` (heaptrack) sees Rust's allocations beside
/// librdkafka's (BENCHMARKS.md, "Fewer indexes on counted events, and
/// rating's memory, profiled").
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
