//! The growth table of a sweep (`tally bench-table results.jsonl`): from a
//! results file of `tally bench --results` lines, one markdown table per
//! knob the sweep varied, each figure as the knob grows.
//!
//! The first line is the base; a knob's table holds the runs that differ
//! from the base in that knob only (and the base itself), in the knob's
//! order. A run that differs in two knobs is in no table.

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::figures::Knobs;

/// The knobs a sweep varies, in the order of the tables.
pub const SWEPT: [&str; 7] = [
    "accounts",
    "skus",
    "history_months",
    "contracts_percent",
    "zipf",
    "lines",
    "grants",
];

/// The part of a report a table shows.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Run {
    knobs: Knobs,
    seed_seconds: f64,
    history_seconds: f64,
    ingest_events_per_s: f64,
    ingest_to_produce_ratio: f64,
    end_to_end_events_per_s: f64,
    end_to_end_to_consume_ratio: f64,
    end_to_end_to_copy_ratio: f64,
    freshness_p50_ms: f64,
    freshness_p99_ms: f64,
    cpu_us_per_event: BTreeMap<String, f64>,
    statement_bytes_per_event: f64,
    database_mib_per_million_events: f64,
    peak_rss_mib: BTreeMap<String, f64>,
    invoices: usize,
    invoices_exact: usize,
}

fn knob(k: &Knobs, name: &str) -> f64 {
    match name {
        "accounts" => k.accounts as f64,
        "skus" => k.skus as f64,
        "history_months" => f64::from(k.history_months),
        "contracts_percent" => f64::from(k.contracts_percent),
        "lines" => k.lines as f64,
        "grants" => f64::from(u8::from(k.grants)),
        _ => k.zipf,
    }
}

/// `a` and `b` differ in no knob but `name` (the events, commitment, dedupe
/// history, providers and the instances serving the run must match too).
fn only_differs_in(a: &Knobs, b: &Knobs, name: &str) -> bool {
    let same_rest = SWEPT
        .iter()
        .filter(|k| **k != name)
        .all(|k| knob(a, k) == knob(b, k));
    same_rest
        && a.events == b.events
        && a.commitment == b.commitment
        && a.history_events == b.history_events
        && a.providers == b.providers
        && a.rating_instances == b.rating_instances
        && a.invoicing_instances == b.invoicing_instances
        && a.churn == b.churn
}

/// The markdown growth tables of a results file (one JSON report a line).
pub fn growth_table(results: &str) -> anyhow::Result<String> {
    let runs: Vec<Run> = results
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).with_context(|| format!("line {}", n + 1)))
        .collect::<anyhow::Result<_>>()?;
    let Some(base) = runs.first() else {
        anyhow::bail!("no runs in the results file");
    };
    let mut out = String::new();
    for name in SWEPT {
        let mut series: Vec<&Run> = runs
            .iter()
            .filter(|r| only_differs_in(&r.knobs, &base.knobs, name))
            .collect();
        series.sort_by(|a, b| knob(&a.knobs, name).total_cmp(&knob(&b.knobs, name)));
        series.dedup_by(|a, b| knob(&a.knobs, name) == knob(&b.knobs, name));
        if series.len() < 2 {
            continue;
        }
        writeln!(out, "### As `{name}` grows\n")?;
        writeln!(
            out,
            "| {name} | ingest events/s (× produce) | end to end events/s (× consume, × COPY) | freshness p50 / p99 ms | rating CPU µs/event | statement bytes/event | DB MiB per M events | peak RSS MiB (collector / rating / invoicing / api) | exact invoices | seed / history s |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|")?;
        for r in series {
            let rss = |s: &str| {
                r.peak_rss_mib
                    .get(s)
                    .map_or("–".to_owned(), |m| format!("{m:.0}"))
            };
            writeln!(
                out,
                "| {} | {:.0} ({:.2}) | {:.0} ({:.2}, {:.2}) | {:.0} / {:.0} | {} | {:.0} | {:.1} | {} / {} / {} / {} | {} of {} | {:.1} / {:.1} |",
                knob_text(&r.knobs, name),
                r.ingest_events_per_s,
                r.ingest_to_produce_ratio,
                r.end_to_end_events_per_s,
                r.end_to_end_to_consume_ratio,
                r.end_to_end_to_copy_ratio,
                r.freshness_p50_ms,
                r.freshness_p99_ms,
                r.cpu_us_per_event
                    .get("rating")
                    .map_or("–".to_owned(), |c| format!("{c:.1}")),
                r.statement_bytes_per_event,
                r.database_mib_per_million_events,
                rss("collector"),
                rss("rating"),
                rss("invoicing"),
                rss("api"),
                r.invoices_exact,
                r.invoices,
                r.seed_seconds,
                r.history_seconds,
            )?;
        }
        writeln!(out)?;
    }
    if out.is_empty() {
        anyhow::bail!("no knob varies from the first run's in two runs or more");
    }
    Ok(out)
}

fn knob_text(k: &Knobs, name: &str) -> String {
    match name {
        "zipf" => format!("{}", k.zipf),
        "grants" => (if k.grants { "on" } else { "off" }).to_owned(),
        _ => format!("{}", knob(k, name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(accounts: usize, skus: usize, months: u32, ingest: f64) -> String {
        serde_json::json!({
            "knobs": {"accounts": accounts, "providers": 4, "skus_per_provider": skus / 4,
                      "skus": skus, "zipf": 1.0, "lines": 0, "contracts_percent": 0,
                      "commitment": "100", "grants": false, "history_months": months,
                      "history_events": 0, "events": 1000},
            "seed_seconds": 0.5,
            "ingest_events_per_s": ingest, "ingest_to_produce_ratio": 0.25,
            "end_to_end_events_per_s": 900.0, "end_to_end_to_consume_ratio": 0.01,
            "end_to_end_to_copy_ratio": 0.02, "freshness_p50_ms": 800.4,
            "freshness_p99_ms": 1200.6, "cpu_us_per_event": {"rating": 41.26},
            "statement_bytes_per_event": 310.2, "database_mib_per_million_events": 512.0,
            "peak_rss_mib": {"collector": 100.2, "rating": 190.7, "invoicing": 110.0, "api": 60.0},
            "invoices": 12, "invoices_exact": 12,
        })
        .to_string()
    }

    #[test]
    fn each_knob_varied_from_the_base_gets_a_table_in_its_order() {
        let results = [
            line(1000, 20, 0, 5000.0),
            line(100_000, 20, 0, 4000.0),
            line(10_000, 20, 0, 4500.0),
            line(1000, 1000, 0, 4900.0),
            line(1000, 20, 3, 4800.0),
            // Two knobs from the base: in no table.
            line(10_000, 1000, 0, 1.0),
        ]
        .join("\n");
        let table = growth_table(&results).unwrap();
        let sections: Vec<&str> = table.lines().filter(|l| l.starts_with("###")).collect();
        assert_eq!(
            sections,
            [
                "### As `accounts` grows",
                "### As `skus` grows",
                "### As `history_months` grows"
            ]
        );
        let accounts: Vec<&str> = table
            .lines()
            .skip_while(|l| !l.contains("`accounts`"))
            // The heading, a blank line, the header and its rule.
            .skip(4)
            .take_while(|l| l.starts_with('|'))
            .collect();
        assert_eq!(accounts.len(), 3);
        assert_eq!(
            accounts[0],
            "| 1000 | 5000 (0.25) | 900 (0.01, 0.02) | 800 / 1201 | 41.3 | 310 | 512.0 | 100 / 191 / 110 / 60 | 12 of 12 | 0.5 / 0.0 |"
        );
        assert!(
            accounts[1].starts_with("| 10000 | 4500 "),
            "{}",
            accounts[1]
        );
        assert!(
            accounts[2].starts_with("| 100000 | 4000 "),
            "{}",
            accounts[2]
        );
        assert!(!table.contains("| 1 (0.25)"), "{table}");
    }

    #[test]
    fn a_line_without_instances_ran_one_of_each_and_a_scaled_run_joins_no_growth_table() {
        let old: Run = serde_json::from_str(&line(1000, 20, 0, 5000.0)).unwrap();
        assert_eq!(
            (
                old.knobs.rating_instances,
                old.knobs.invoicing_instances,
                old.knobs.churn
            ),
            (1, 1, false)
        );
        let mut scaled: serde_json::Value =
            serde_json::from_str(&line(100_000, 20, 0, 4000.0)).unwrap();
        scaled["knobs"]["rating_instances"] = 2.into();
        let results = [
            line(1000, 20, 0, 5000.0),
            line(10_000, 20, 0, 4500.0),
            scaled.to_string(),
        ]
        .join("\n");
        let table = growth_table(&results).unwrap();
        let rows: Vec<&str> = table
            .lines()
            .filter(|l| l.starts_with("| ") && l.as_bytes()[2].is_ascii_digit())
            .collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(!table.contains("| 100000 "), "{table}");
    }

    /// The shape of the load: skew, lines per statement and credits, each
    /// a table of its own.
    #[test]
    fn skew_lines_and_grants_get_tables_of_their_own() {
        let with = |knob: &str, value: serde_json::Value| {
            let mut run: serde_json::Value =
                serde_json::from_str(&line(1000, 20, 0, 4000.0)).unwrap();
            run["knobs"][knob] = value;
            run.to_string()
        };
        let results = [
            line(1000, 20, 0, 5000.0),
            with("zipf", 0.0.into()),
            with("lines", 25.into()),
            with("lines", 1.into()),
            with("grants", true.into()),
        ]
        .join("\n");
        let table = growth_table(&results).unwrap();
        let sections: Vec<&str> = table.lines().filter(|l| l.starts_with("###")).collect();
        assert_eq!(
            sections,
            [
                "### As `zipf` grows",
                "### As `lines` grows",
                "### As `grants` grows"
            ]
        );
        let first = |name: &str| -> Vec<String> {
            table
                .lines()
                .skip_while(|l| !l.contains(&format!("`{name}`")))
                .skip(4)
                .take_while(|l| l.starts_with('|'))
                .map(|l| l.split(" | ").next().unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(first("zipf"), ["| 0", "| 1"]);
        assert_eq!(first("lines"), ["| 0", "| 1", "| 25"]);
        assert_eq!(first("grants"), ["| off", "| on"]);
    }

    #[test]
    fn a_results_file_without_a_varied_knob_is_an_error() {
        assert!(growth_table("").is_err());
        assert!(growth_table(&line(1000, 20, 0, 1.0)).is_err());
        let bad = format!("{}\nnot json", line(1000, 20, 0, 1.0));
        let err = growth_table(&bad).unwrap_err();
        assert_eq!(err.to_string(), "line 2");
    }

    #[test]
    fn the_reports_tally_bench_appends_are_what_the_table_reads() {
        let report = |accounts: usize, e2e: f64| {
            let mut r = crate::bench::Report {
                knobs: Knobs {
                    accounts,
                    skus: 20,
                    events: 1000,
                    ..Knobs::default()
                },
                end_to_end_events_per_s: e2e,
                invoices: 7,
                invoices_exact: 7,
                ..crate::bench::Report::default()
            };
            r.cpu_us_per_event.insert("rating".into(), 12.0);
            r.peak_rss_mib.insert("rating".into(), 150.0);
            serde_json::to_string(&r).unwrap()
        };
        let results = format!("{}\n{}\n", report(1000, 300.0), report(10_000, 200.0));
        let table = growth_table(&results).unwrap();
        assert!(
            table.contains("| 1000 | 0 (0.00) | 300 (0.00, 0.00) | 0 / 0 | 12.0 | 0 | 0.0 | – / 150 / – / – | 7 of 7 | 0.0 / 0.0 |"),
            "{table}"
        );
        assert!(table.contains("| 10000 | 0 (0.00) | 200 "), "{table}");
    }
}
