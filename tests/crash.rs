//! The rating service is killed with SIGKILL three times in the middle of a
//! 50,000-event stream and restarted; every invoice total is still exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use std::time::Duration as StdDuration;
use tally::up::Service;

const EVENTS: usize = 50_000;
const KILLS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rating_killed_mid_stream_still_bills_every_event_once() {
    // Collector and invoicing in this process; rating as its own process.
    let seeded = Seeded::start(&[Service::Collector, Service::Invoicing, Service::Api]).await;
    let h = &seeded.h;
    let mut rating = h.spawn("rating");
    let accounts = ["acme".to_owned(), "umbrella".to_owned()];
    let (batches, expected) = usage_stream(&seeded.keys, seeded.now, &accounts, EVENTS, 1000);
    let sender = send_stream(
        &seeded.http,
        &seeded.collector,
        batches,
        StdDuration::from_millis(5),
    );

    // Kill rating while it is consuming, each time once it has counted more.
    let mut counted_at_kill = Vec::new();
    for kill in 0..KILLS {
        let floor = ((kill + 1) * EVENTS / (KILLS + 2)) as i64;
        let until = tokio::time::Instant::now() + StdDuration::from_secs(240);
        loop {
            let counted = counted(&h.pool).await;
            if counted >= floor || tokio::time::Instant::now() > until {
                counted_at_kill.push(counted);
                break;
            }
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
        rating.kill().unwrap(); // SIGKILL
        rating.wait().unwrap();
        rating = h.spawn("rating");
    }
    let accepted = sender.await.unwrap();
    assert_eq!(accepted, EVENTS as u64);
    assert_eq!(counted_at_kill.len(), KILLS);
    assert!(
        counted_at_kill.iter().all(|c| *c < EVENTS as i64),
        "kills happened mid-stream: {counted_at_kill:?}"
    );

    assert_exact_invoices(&seeded, &expected, EVENTS, StdDuration::from_secs(300)).await;
    rating.kill().unwrap();
    rating.wait().unwrap();
    let totals = expected.totals();
    report(&format!(
        "crash test: {EVENTS} events, {KILLS} SIGKILLs at {counted_at_kill:?} counted events, {} invoices, totals {:?}",
        totals.len(),
        totals
    ));
    seeded.running.stop().await.unwrap();
}

/// Rating committed a batch and died before publishing its statement: the
/// outbox row it left is published when rating starts again, and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_committed_but_not_published_is_published_at_restart() {
    let Seeded {
        h,
        now,
        keys,
        running,
        invoicing,
        http,
        ..
    } = Seeded::start(&[Service::Invoicing, Service::Api]).await;
    let time = now - Duration::minutes(1);
    let usage = tally_domain::UsageEvent {
        provider_id: tally_domain::ProviderId::parse("cloud").unwrap(),
        event_id: tally_domain::EventId::parse("before-the-crash").unwrap(),
        account_id: tally_domain::AccountId::parse("acme").unwrap(),
        sku: tally_domain::Sku::parse("cloud.vm.hour").unwrap(),
        quantity: tally_domain::Quantity::new("7.5".parse().unwrap()).unwrap(),
        time,
        received_at: time,
        dimensions: Default::default(),
        resource: None,
        on_behalf_of: None,
    };
    // The rating transaction, committed; its publish never ran.
    let outcome = tally_rating::process_batch(&h.pool, &[usage])
        .await
        .unwrap();
    assert_eq!((outcome.counted, outcome.outbox.len()), (1, 1));
    let pending = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM statement_outbox")
            .fetch_one(&h.pool)
            .await
            .unwrap()
    };
    assert_eq!(pending().await, 1);

    let rating = h.start(&[Service::Rating]).await;
    let mut expected = Expected::default();
    expected.add("acme", time, "cloud.vm.hour", "7.5");
    let totals = expected.totals();
    let bills = wait_for_totals(
        &http,
        &invoicing,
        &keys.finance,
        &totals,
        StdDuration::from_secs(60),
    )
    .await;
    let key = totals.keys().next().unwrap();
    assert_eq!(
        bills.get(key).and_then(|b| b["total"].as_str()),
        Some(totals[key].to_string().as_str())
    );
    assert_eq!(bill_lines(&bills[key]).iter().map(|l| l.4).sum::<i64>(), 1);
    assert_eq!(
        pending().await,
        0,
        "the outbox row is deleted once published"
    );
    rating.stop().await.unwrap();
    running.stop().await.unwrap();
}
