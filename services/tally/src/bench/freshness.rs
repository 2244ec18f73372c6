//! The freshness run: a steady rate, each batch with a probe event for an
//! account of its own, timed until it shows on a draft invoice.

use chrono::{Duration as TimeDelta, Utc};
use hdrhistogram::Histogram;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::services::post_batch;
use super::workload::{Catalog, Gen, Planned};
use super::BenchArgs;

pub(super) struct Freshness {
    pub(super) histogram: Histogram<u64>,
    pub(super) probes: usize,
    pub(super) achieved: f64,
    /// The events sent, by account, for the exactness check.
    pub(super) planned: Vec<(String, Planned)>,
}

pub(super) async fn freshness(
    pool: &PgPool,
    http: &reqwest::Client,
    url: &str,
    catalog: &Catalog,
    gen: &Gen<'_>,
    a: &BenchArgs,
) -> anyhow::Result<Freshness> {
    const BATCH: u64 = 100;
    let batches = (a.freshness_rate * a.freshness_seconds).div_ceil(BATCH);
    sqlx::query(
        "INSERT INTO accounts (id, name, currency)
         SELECT 'probe' || g, 'Probe ' || g, 'USD' FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(i64::try_from(batches)?)
    .execute(pool)
    .await?;
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = AtomicU64::new(0);
    let planned: Mutex<Vec<(String, Planned)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let interval = Duration::from_secs_f64(BATCH as f64 / a.freshness_rate as f64);
    let base = a.events + 1_000_000;
    let sender = |_: usize| async {
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= batches {
                return anyhow::Ok(());
            }
            tokio::time::sleep_until((started + interval * k as u32).into()).await;
            let probe = format!("probe{k}");
            let mut body = String::from("[");
            let mut provider = 0;
            let mut mine = Vec::with_capacity(BATCH as usize);
            for j in 0..BATCH {
                let i = base + k * BATCH + j;
                let mut p = gen.plan(i);
                // The batch's provider owns every SKU in it.
                p.provider = (k % catalog.provider_ids.len() as u64) as usize;
                p.sku %= catalog.skus[p.provider].len();
                p.time = Utc::now() - TimeDelta::seconds(1);
                let account = if j == 0 {
                    probe.clone()
                } else {
                    catalog.accounts[p.account].clone()
                };
                if j > 0 {
                    body.push(',');
                }
                body.push_str(&gen.json(&format!("f{i}"), &p, &account));
                provider = p.provider;
                mine.push((account, p));
            }
            body.push(']');
            post_batch(http, url, &catalog.provider_keys[provider], body).await?;
            acked
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(probe, Instant::now());
            planned
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .extend(mine);
        }
    };
    let senders = futures::future::join_all((0..a.concurrency.max(4)).map(sender));
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut seen: HashSet<String> = HashSet::new();
    let poll = async {
        let deadline = started + Duration::from_secs(a.freshness_seconds + 120);
        while seen.len() < batches as usize && Instant::now() < deadline {
            // Only the probes acked and not seen yet, each an index lookup:
            // the poll is load on the same PostgreSQL, so it stays small.
            // A probe leaves `acked` once it is seen.
            let waiting: Vec<String> = acked
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .keys()
                .cloned()
                .collect();
            let visible: Vec<String> = if waiting.is_empty() {
                Vec::new()
            } else {
                sqlx::query_scalar(
                    "SELECT i.account_id FROM UNNEST($1::text[]) AS t(id)
                     JOIN invoices i ON i.account_id = t.id",
                )
                .bind(&waiting)
                .fetch_all(pool)
                .await?
            };
            let at = Instant::now();
            {
                let mut acked = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                for account in visible {
                    if let Some(t) = acked.remove(&account) {
                        if seen.insert(account) {
                            histogram.record(at.saturating_duration_since(t).as_micros() as u64)?;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    };
    let (sent, polled) = tokio::join!(
        async {
            let r = senders.await;
            (r, started.elapsed())
        },
        poll
    );
    for r in sent.0 {
        r?;
    }
    polled?;
    let planned = planned
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(Freshness {
        probes: seen.len(),
        achieved: planned.len() as f64 / sent.1.as_secs_f64(),
        histogram,
        planned,
    })
}
