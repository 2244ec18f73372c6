//! Issue 19: a statement of thousands of lines (one account using
//! thousands of SKUs) is billed exactly. Up to `TALLY_STATEMENT_MAX_BYTES`
//! it is published whole (compressed, on a topic sized for it); beyond it,
//! as a reference to the version rating stored in PostgreSQL, which
//! invoicing reads: nothing is refused and no partition waits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Utc};
use common::*;
use rdkafka::consumer::Consumer as _;
use rdkafka::Message;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::time::Duration;
use tally::up::Service;
use tally_platform::statements::{self, Published};
use tally_rating::outcome::HeldStatement;

/// `n` first-party SKUs `cloud.s<i>` at 0.0100 + i/10,000 USD, and the
/// accounts `acme` (USD) and `umbrella` (EUR, one SKU priced); returns the
/// keys of `cloud` and finance, and each SKU's unit price.
async fn seed(h: &Harness, n: usize, since: DateTime<Utc>) -> (String, String, Vec<Decimal>) {
    use tally_domain::ProviderKind::FirstParty;
    let pool = &h.pool;
    let cloud = tally::admin::create_provider(pool, "cloud", "Stratus Cloud", FirstParty)
        .await
        .unwrap();
    let mut prices = Vec::with_capacity(n);
    for i in 0..n {
        let sku = format!("cloud.s{i}");
        tally::admin::create_sku(pool, &sku, "cloud", &format!("Service {i}"), "unit")
            .await
            .unwrap();
        let price = Decimal::new(100 + i as i64, 4);
        tally::admin::set_price(pool, &sku, "USD", price, since)
            .await
            .unwrap();
        prices.push(price);
    }
    tally::admin::set_price(pool, "cloud.s0", "EUR", Decimal::new(5, 1), since)
        .await
        .unwrap();
    tally::admin::create_account(pool, "acme", "Acme Inc", "USD")
        .await
        .unwrap();
    tally::admin::create_account(pool, "umbrella", "Umbrella GmbH", "EUR")
        .await
        .unwrap();
    let finance = tally::admin::create_staff_key(pool, "finance")
        .await
        .unwrap();
    (cloud, finance, prices)
}

/// Posts one event of each SKU for `acme` (quantity 3; 1,000 a request)
/// and one of `cloud.s0` for `umbrella` (quantity 7).
async fn send_usage(
    http: &reqwest::Client,
    collector: &str,
    key: &str,
    n: usize,
    at: DateTime<Utc>,
) {
    let mut events: Vec<_> = (0..n)
        .map(|i| {
            event(
                &format!("e{i}"),
                "cloud",
                "acme",
                &format!("cloud.s{i}"),
                "3",
                at,
            )
        })
        .collect();
    events.push(event("u0", "cloud", "umbrella", "cloud.s0", "7", at));
    for chunk in events.chunks(1000) {
        let (status, body) = post_events(http, collector, key, chunk).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(
            body["accepted"].as_u64(),
            Some(chunk.len() as u64),
            "{body}"
        );
    }
}

/// Waits for the bills of acme (`n` lines, 3 of each SKU) and umbrella (7 ×
/// 0.50 EUR = 3.50), then asserts every line of acme's draft invoice and
/// both totals exactly.
async fn assert_billed(
    http: &reqwest::Client,
    api: &str,
    finance: &str,
    prices: &[Decimal],
    period: &str,
) {
    let mut expected_lines = BTreeMap::new();
    let mut total = Decimal::ZERO;
    for (i, price) in prices.iter().enumerate() {
        let amount = cents(Decimal::from(3) * price);
        total += amount;
        expected_lines.insert(
            format!("cloud.s{i}"),
            ("3".to_owned(), amount.to_string(), 1_i64),
        );
    }
    let totals = BTreeMap::from([
        (("acme".to_owned(), period.to_owned()), total),
        (
            ("umbrella".to_owned(), period.to_owned()),
            "3.50".parse().unwrap(),
        ),
    ]);
    let bills = wait_for_totals(http, api, finance, &totals, Duration::from_secs(180)).await;
    let acme = &bills[&("acme".to_owned(), period.to_owned())];
    assert_eq!(acme["status"].as_str(), Some("draft"), "{}", acme["status"]);
    assert_eq!(acme["total"].as_str().unwrap(), total.to_string());
    let lines: BTreeMap<String, (String, String, i64)> = bill_lines(acme)
        .into_iter()
        .map(|(provider, sku, quantity, amount, events)| {
            assert_eq!(provider, "cloud");
            (sku, (quantity, amount, events))
        })
        .collect();
    assert_eq!(lines.len(), prices.len());
    assert_eq!(lines, expected_lines);
    let umbrella = &bills[&("umbrella".to_owned(), period.to_owned())];
    assert_eq!(umbrella["total"].as_str(), Some("3.50"));
    assert_eq!(bill_lines(umbrella).len(), 1);
}

/// Seeds `skus` SKUs, runs the pipeline, sends acme one event of each and
/// umbrella one, and asserts both draft invoices exactly.
async fn bill(h: &Harness, skus: usize) {
    let now = Utc::now();
    let (cloud, finance, prices) = seed(h, skus, now - chrono::Duration::days(30)).await;
    let running = h
        .start(&[
            Service::Collector,
            Service::Rating,
            Service::Invoicing,
            Service::Api,
        ])
        .await;
    let http = reqwest::Client::new();
    send_usage(&http, &running.collector_url().unwrap(), &cloud, skus, now).await;
    assert_billed(
        &http,
        &running.api_url().unwrap(),
        &finance,
        &prices,
        &tally_domain::Period::month_containing(now).label(),
    )
    .await;
}

/// The size of the stored body of acme's statement, and its version.
async fn stored_statement(h: &Harness) -> (usize, i64) {
    let (bytes, version): (i32, i64) = sqlx::query_as(
        "SELECT octet_length(body::text), version FROM statements WHERE account_id = 'acme'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    (bytes as usize, version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_of_ten_thousand_lines_is_billed_exactly() {
    const SKUS: usize = 10_000;
    let h = Harness::new().await;
    bill(&h, SKUS).await;
    // Larger than Kafka's default largest message (what failed before),
    // and published whole: below the default TALLY_STATEMENT_MAX_BYTES.
    let (bytes, _) = stored_statement(&h).await;
    assert!(
        bytes > tally_platform::kafka::TOPIC_MAX_MESSAGE_BYTES
            && bytes <= tally_platform::kafka::STATEMENT_MAX_BYTES,
        "{bytes}"
    );
    report(&format!(
        "big statement: {SKUS} lines, {bytes} bytes ({} a line), published whole",
        bytes / SKUS
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_beyond_the_limit_goes_by_reference_and_is_billed_exactly() {
    const SKUS: usize = 600;
    const LIMIT: usize = 50_000;
    let server = tally::infra::ensure_postgres().await.unwrap();
    let h = Harness::build(&test_kafka(), &server, |c| c.statement_max_bytes = LIMIT).await;
    bill(&h, SKUS).await;
    // acme's statement is larger than the limit and than the topic's
    // largest message (made from the limit): its newest version went as a
    // reference; umbrella's one-line statement went whole.
    let (bytes, version) = stored_statement(&h).await;
    let topic_max = tally_platform::kafka::statement_topic_max_message_bytes(&h.config);
    assert_eq!(topic_max, LIMIT + 2 * 64 * 1024);
    assert!(bytes > topic_max, "{bytes}");
    let published = read_statements(&h).await;
    let acme_last = published
        .iter()
        .rev()
        .find(|(key, _)| key.starts_with("acme:"))
        .map(|(_, p)| p)
        .unwrap();
    match acme_last {
        Published::Stored(r) => {
            assert_eq!(
                (r.account_id.as_str(), r.version, r.bytes),
                ("acme", version, bytes)
            )
        }
        Published::Whole(s) => panic!("acme's version {} went whole", s.version),
    }
    let umbrella: Vec<&Published> = published
        .iter()
        .filter(|(key, _)| key.starts_with("umbrella:"))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(umbrella.len(), 1);
    match umbrella[0] {
        Published::Whole(s) => assert_eq!((s.total, s.lines.len()), (Decimal::new(350, 2), 1)),
        Published::Stored(r) => panic!("umbrella's statement went by reference: {r:?}"),
    }

    // A topic made for a smaller limit is refused for a larger one, saying
    // how to fix it.
    let larger = tally_platform::Config {
        statement_max_bytes: tally_platform::kafka::STATEMENT_MAX_BYTES,
        ..h.config.clone()
    };
    let err = tally_platform::kafka::ensure_topics(&larger)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} has max.message.bytes {topic_max} but Tally publishes statements of up to \
             TALLY_STATEMENT_MAX_BYTES as one message and needs 16908288: raise the topic's \
             max.message.bytes to 16908288, or set TALLY_STATEMENT_MAX_BYTES to {LIMIT} or less \
             (larger statements are then published by reference)",
            h.config.topics().statements
        )
    );
}

/// A statement of `lines` lines of account `account`, at `version`.
fn statement_of(account: &str, lines: usize, version: i64) -> tally_domain::Statement {
    use tally_domain::{ProviderId, ProviderKind, ProviderRef, Sku, UsageAggregate};
    let provider = ProviderRef {
        id: ProviderId::parse("cloud").unwrap(),
        name: "Stratus Cloud".into(),
        kind: ProviderKind::FirstParty,
    };
    let since = Utc::now() - chrono::Duration::days(30);
    let aggregates = (0..lines)
        .map(|i| UsageAggregate {
            provider: provider.clone(),
            sku: Sku::parse(&format!("cloud.s{i}")).unwrap(),
            sku_name: format!("Service {i}"),
            unit: "unit".into(),
            price_id: i as i64 + 1,
            price_effective_from: since,
            model: tally_domain::PriceModel::per_unit(Decimal::new(100 + i as i64, 4))
                .unwrap()
                .into(),
            quantity: Decimal::from(3),
            event_count: 1,
            markup_pct: Decimal::ZERO,
            platform_fee_pct: Decimal::from(100),
            resource: None,
            included: Decimal::ZERO,
        })
        .collect();
    tally_domain::Statement::compute(
        tally_domain::AccountId::parse(account).unwrap(),
        tally_domain::Period::month_containing(Utc::now()),
        tally_domain::Currency::parse("USD").unwrap(),
        version,
        aggregates,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_beyond_one_publish_chunk_all_reach_the_topic_in_order() {
    let h = Harness::new().await;
    let sink = statement_sink(&h);
    // 3 accounts × 4 versions of 3,500 lines: some 15 MiB of bodies, so
    // more than one chunk of 4 MiB (each chunk's acks awaited before the
    // next is sent), published in two calls.
    let statements: Vec<HeldStatement> = (1..=4)
        .flat_map(|version| {
            ["a1", "a2", "a3"]
                .into_iter()
                .map(move |account| HeldStatement::of(&statement_of(account, 3_500, version)))
        })
        .collect::<Result<_, _>>()
        .unwrap();
    let (first, second) = statements.split_at(6);
    let bytes: usize = first.iter().map(|s| s.bytes).sum();
    assert!(bytes > 4 << 20, "{bytes}");
    tally_rating::outbox::publish(&h.pool, &sink, first, &[], &[])
        .await
        .unwrap();
    tally_rating::outbox::publish(&h.pool, &sink, second, &[], &[])
        .await
        .unwrap();
    let published: Vec<(String, i64, usize)> = read_statements(&h)
        .await
        .into_iter()
        .map(|(key, p)| match p {
            Published::Whole(s) => (key, s.version, s.lines.len()),
            Published::Stored(r) => panic!("{key} went by reference: {r:?}"),
        })
        .collect();
    // Each account's versions in the order published, every line with them.
    let period = tally_domain::Period::month_containing(Utc::now()).label();
    for account in ["a1", "a2", "a3"] {
        let key = format!("{account}:{period}");
        let versions: Vec<(i64, usize)> = published
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, v, lines)| (*v, *lines))
            .collect();
        assert_eq!(versions, [(1, 3_500), (2, 3_500), (3, 3_500), (4, 3_500)]);
    }
    assert_eq!(published.len(), 12);
}

/// Invoicing's batch of statement messages ends once they hold
/// `BATCH_BYTES` (the message that passes it included), however many
/// `TALLY_BATCH_MAX` allows: 24 statements of 3,500 lines (each some
/// 1.3 MiB) on the topic come in a batch of 13 and one of the other 11.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoicings_batches_of_statements_are_bounded_by_their_bytes() {
    use tally_invoicing::consumer::{next_batch, BATCH_BYTES};
    let h = Harness::new().await;
    let sink = statement_sink(&h);
    let accounts: Vec<String> = (10..34).map(|i| format!("a{i}")).collect();
    let statements: Vec<tally_domain::Statement> = accounts
        .iter()
        .map(|account| statement_of(account, 3_500, 1))
        .collect();
    let sizes: Vec<usize> = statements
        .iter()
        .map(|s| serde_json::to_string(s).unwrap().len())
        .collect();
    // Every body is of one size: the batches' lengths do not depend on
    // the order partitions are read in.
    assert!(sizes.iter().all(|&b| b == sizes[0]), "{sizes:?}");
    let per_batch = BATCH_BYTES.div_ceil(sizes[0]);
    assert_eq!(per_batch, 13, "a body of {} bytes", sizes[0]);
    let held: Vec<HeldStatement> = statements
        .iter()
        .map(HeldStatement::of)
        .collect::<Result<_, _>>()
        .unwrap();
    tally_rating::outbox::publish(&h.pool, &sink, &held, &[], &[])
        .await
        .unwrap();
    let consumer = tally_platform::kafka::statements_consumer(
        &h.config,
        &format!("{}-batches", h.config.group_prefix),
    )
    .unwrap();
    consumer
        .subscribe(&[&h.config.topics().statements])
        .unwrap();
    let mut lengths = Vec::new();
    let mut seen = 0;
    while seen < statements.len() {
        let batch = tokio::time::timeout(
            Duration::from_secs(60),
            // A full batch returns once it holds its bytes; only the last
            // waits this long for more.
            next_batch(&consumer, 20_000, Duration::from_secs(20)),
        )
        .await
        .expect("the topic holds 24 statements")
        .unwrap();
        let bytes: usize = batch
            .iter()
            .map(|m| m.payload().map_or(0, <[u8]>::len))
            .sum();
        assert!(bytes - sizes[0] < BATCH_BYTES, "{bytes}");
        seen += batch.len();
        lengths.push(batch.len());
    }
    assert_eq!(lengths, [13, 11]);
}

/// Invoicing's consumer fetches a few MiB at a time (statements held
/// decompressed cost memory), yet a statement message larger than a whole
/// fetch comes whole: three fetches' worth (12 MiB) that do not compress,
/// so lz4 leaves the batch as large (the broker returns the first batch
/// of a fetch's first non-empty partition whatever the fetch sizes).
/// `receive.message.max.bytes` is checked by kafka.rs's unit tests: this
/// body is below librdkafka's default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_message_larger_than_a_fetch_comes_whole() {
    use rdkafka::producer::FutureRecord;
    let h = Harness::new().await;
    let topic = h.config.topics().statements;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let body: Vec<u8> = (0..3 * tally_platform::kafka::STATEMENT_FETCH_BYTES)
        .map(|_| {
            // xorshift: bytes lz4 cannot shrink.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let producer = tally_platform::kafka::statements_producer(&h.config).unwrap();
    producer
        .send(
            FutureRecord::to(&topic).key("acme:2026-11").payload(&body),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let consumer = tally_platform::kafka::statements_consumer(
        &h.config,
        &format!("{}-whole", h.config.group_prefix),
    )
    .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .expect("the message arrives")
        .unwrap();
    assert_eq!(message.key(), Some(&b"acme:2026-11"[..]));
    assert_eq!(message.payload().map(<[u8]>::len), Some(body.len()));
    assert!(message.payload() == Some(&body[..]));
}

/// Rating's sink of statements on the harness's `billing.statements`.
fn statement_sink(h: &Harness) -> tally_rating::outbox::StatementSink {
    tally_rating::outbox::StatementSink {
        producer: tally_platform::kafka::statements_producer(&h.config).unwrap(),
        topic: h.config.topics().statements,
        max_bytes: h.config.statement_max_bytes,
    }
}

/// Every message on the harness's `billing.statements`, in partition order
/// (each account's in the order published): (key, what it carries).
async fn read_statements(h: &Harness) -> Vec<(String, Published)> {
    let topic = h.config.topics().statements;
    let consumer = tally_platform::kafka::statements_consumer(
        &h.config,
        &format!("{}-read", h.config.group_prefix),
    )
    .unwrap();
    let wait = Duration::from_secs(10);
    let mut end: BTreeMap<i32, i64> = BTreeMap::new();
    for partition in 0..h.config.usage_partitions {
        let (_, high) =
            tokio::task::block_in_place(|| consumer.fetch_watermarks(&topic, partition, wait))
                .unwrap();
        if high > 0 {
            end.insert(partition, high);
        }
    }
    consumer.subscribe(&[&topic]).unwrap();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !end.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "topic not read to its end"
        );
        let batch = tally_platform::kafka::next_batch_within(
            &consumer,
            1000,
            Duration::from_millis(50),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        for m in batch {
            let Some(last) = end.get(&m.partition()).copied() else {
                continue;
            };
            if m.offset() < last {
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                out.push((key, statements::decode(&m).unwrap()));
            }
            if m.offset() + 1 >= last {
                end.remove(&m.partition());
            }
        }
    }
    out
}
