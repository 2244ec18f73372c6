//! An event that cannot be priced waits in the DLQ; once the price exists, an
//! operator replays it and it is billed, once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use rust_decimal_macros::dec;
use std::time::Duration as StdDuration;
use tally::up::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_into_the_bill_once_the_cause_is_fixed() {
    let Seeded {
        h,
        now,
        keys,
        running,
        collector,
        invoicing,
        http,
    } = Seeded::start(&Service::ALL).await;
    let t = now - Duration::minutes(5);

    // cloud.egress.gb has no EUR price: the umbrella event is dead-lettered.
    let events = [
        event("ok", "cloud", "umbrella", "cloud.vm.hour", "10", t),
        event("stuck", "cloud", "umbrella", "cloud.egress.gb", "100", t),
    ];
    let (status, body) = post_events(&http, &collector, &keys.cloud, &events).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)));
    let period = t.format("%Y-%m").to_string();
    let key = ("umbrella".to_owned(), period.clone());
    let before = [(key.clone(), dec!(0.38))].into_iter().collect(); // 10 × 0.0383
    let bills = wait_for_totals(
        &http,
        &invoicing,
        &keys.finance,
        &before,
        StdDuration::from_secs(60),
    )
    .await;
    assert_eq!(bills[&key]["total"], "0.38");

    // Nothing is replayed while asked for another code.
    let report = tally::dlq::replay(
        &h.config,
        &["account_unknown".into()],
        true,
        StdDuration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!((report.seen, report.replayed), (1, 0));

    // Finance adds the missing EUR price (a correction, so it may be backdated), then the operator replays.
    tally::admin::set_price(
        &h.pool,
        "cloud.egress.gb",
        "EUR",
        dec!(0.083),
        now - Duration::days(60),
    )
    .await
    .unwrap();
    let report = tally::dlq::replay(
        &h.config,
        &["no_price".into()],
        false,
        StdDuration::from_secs(2),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.seen, report.replayed, report.unreplayable),
        (1, 1, 0)
    );
    let after = [(key.clone(), dec!(8.68))].into_iter().collect(); // 0.38 + 100 × 0.083
    let bills = wait_for_totals(
        &http,
        &invoicing,
        &keys.finance,
        &after,
        StdDuration::from_secs(60),
    )
    .await;
    assert_eq!(bills[&key]["total"], "8.68");

    // Replayed dead letters are not replayed again.
    let again = tally::dlq::replay(&h.config, &[], false, StdDuration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(again, tally::dlq::ReplayReport::default());
    running.stop().await.unwrap();
}
