//! `tally import`: usage from NDJSON and gzipped CSV files passes the
//! collector's rules; good lines are billed exactly, every bad line is in
//! the report with its code, and a rerun bills nothing twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::Write;
use std::time::Duration;
use tally::up::Service;

const NDJSON_GOOD: usize = 300;
const CSV_GOOD: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_files_are_billed_exactly_once_and_bad_lines_are_reported() {
    let seeded = Seeded::start(&[Service::Rating, Service::Invoicing, Service::Api]).await;
    let h = &seeded.h;
    let time = seeded.now - chrono::Duration::hours(1);
    let dir = std::env::temp_dir().join(format!("tally-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    // NDJSON: 300 good events of 1.5 hours, then bad lines and a blank one.
    let ndjson = dir.join("usage.ndjson");
    let mut file = std::fs::File::create(&ndjson).unwrap();
    for i in 0..NDJSON_GOOD {
        let e = event(
            &format!("nd-{i}"),
            "dbco",
            "acme",
            "dbco.db.hour",
            "1.5",
            time,
        );
        writeln!(file, "{e}").unwrap();
    }
    writeln!(file, "{{not json").unwrap();
    writeln!(file).unwrap();
    let e = event("nd-foreign", "dbco", "acme", "cloud.vm.hour", "1", time);
    writeln!(file, "{e}").unwrap();
    let e = event("nd-nobody", "dbco", "nobody", "dbco.db.hour", "1", time);
    writeln!(file, "{e}").unwrap();
    drop(file);

    // Gzipped CSV: 200 good events of 2 hours (one of them a duplicate of
    // an NDJSON event), then a bad quantity.
    let csv = dir.join("usage.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&csv).unwrap(),
        flate2::Compression::default(),
    );
    writeln!(gz, "id,account,sku,quantity,time,dimension.region").unwrap();
    let stamp = time.to_rfc3339();
    for i in 0..CSV_GOOD {
        let id = if i == 0 {
            "nd-0".to_owned()
        } else {
            format!("csv-{i}")
        };
        writeln!(gz, "{id},acme,dbco.db.hour,2,{stamp},eu").unwrap();
    }
    writeln!(gz, "csv-bad,acme,dbco.db.hour,-3,{stamp},eu").unwrap();
    gz.finish().unwrap();

    let report = dir.join("refused.csv");
    let import = || {
        let out = h
            .tally(&[
                "import",
                "--provider",
                "dbco",
                "--report",
                report.to_str().unwrap(),
                ndjson.to_str().unwrap(),
                csv.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let summary = import();
    assert!(
        summary.starts_with(&format!(
            "imported {} lines in ",
            NDJSON_GOOD + 3 + CSV_GOOD + 1
        )),
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "): {} accepted, 4 refused",
            NDJSON_GOOD + CSV_GOOD
        )),
        "{summary}"
    );
    let refused = std::fs::read_to_string(&report).unwrap();
    let rows: Vec<(String, String, String)> = refused
        .lines()
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            let file = if cells[0].ends_with("usage.ndjson") {
                "ndjson"
            } else {
                "csv"
            };
            (file.to_owned(), cells[1].to_owned(), cells[3].to_owned())
        })
        .collect();
    let expected_rows = [
        ("ndjson", NDJSON_GOOD + 1, "malformed"),
        ("ndjson", NDJSON_GOOD + 3, "sku_not_owned"),
        ("ndjson", NDJSON_GOOD + 4, "account_unknown"),
        ("csv", CSV_GOOD + 2, "quantity_invalid"),
    ]
    .map(|(f, line, code)| (f.to_owned(), line.to_string(), code.to_owned()));
    assert_eq!(rows, expected_rows, "{refused}");

    // 300 × 1.5 h + 199 × 2 h (nd-0 counted once) = 848 h at 0.2475 USD.
    let period = time.format("%Y-%m").to_string();
    let key = ("acme".to_owned(), period);
    let expected = std::collections::BTreeMap::from([(key.clone(), "209.88".parse().unwrap())]);
    let bills = wait_for_totals(
        &seeded.http,
        &seeded.invoicing,
        &seeded.keys.finance,
        &expected,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(bills[&key]["total"], "209.88");
    wait_until_rated(h, Duration::from_secs(60)).await;
    let billed = (NDJSON_GOOD + CSV_GOOD - 1) as i64;
    assert_eq!(counted(&h.pool).await, billed);

    // Again: everything is accepted again and billed once.
    let again = import();
    assert!(
        again.contains(&format!(
            "): {} accepted, 4 refused",
            NDJSON_GOOD + CSV_GOOD
        )),
        "{again}"
    );
    wait_until_rated(h, Duration::from_secs(60)).await;
    assert_eq!(counted(&h.pool).await, billed);
    let bills = wait_for_totals(
        &seeded.http,
        &seeded.invoicing,
        &seeded.keys.finance,
        &expected,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(bills[&key]["total"], "209.88");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `POST /v1/imports`: a provider uploads NDJSON, and gzipped CSV, through
/// the collector; the answer lists each refused line with its code, the
/// good lines are billed exactly, and an upload again bills nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_imported_like_a_file() {
    let seeded = Seeded::start(&[
        Service::Collector,
        Service::Rating,
        Service::Invoicing,
        Service::Api,
    ])
    .await;
    let (h, http) = (&seeded.h, &seeded.http);
    let url = format!("{}/v1/imports", seeded.collector);
    let time = seeded.now - chrono::Duration::hours(1);

    // 120 good events of 0.5 hours, a line that is not JSON, another
    // provider's SKU.
    let mut ndjson = String::new();
    for i in 0..120 {
        let e = event(
            &format!("up-{i}"),
            "dbco",
            "acme",
            "dbco.db.hour",
            "0.5",
            time,
        );
        ndjson.push_str(&format!("{e}\n"));
    }
    ndjson.push_str("{not json\n");
    let foreign = event("up-foreign", "dbco", "acme", "cloud.vm.hour", "1", time);
    ndjson.push_str(&format!("{foreign}\n"));
    let upload = |body: Vec<u8>, content_type: &'static str, gzip: bool| {
        let mut request = http
            .post(&url)
            .bearer_auth(&seeded.keys.dbco)
            .header("content-type", content_type)
            .body(body);
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        async move {
            let r = request.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = upload(ndjson.clone().into_bytes(), "application/x-ndjson", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["lines"], &body["accepted"], &body["refused"]),
        (
            &serde_json::json!(122),
            &serde_json::json!(120),
            &serde_json::json!(2)
        )
    );
    let refusals: Vec<(u64, String)> = body["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        [
            (121, "malformed".to_owned()),
            (122, "sku_not_owned".to_owned())
        ]
    );
    assert_eq!(body["refusals"][1]["id"], "up-foreign");
    assert_eq!(body["refusals_truncated"], false);

    // Gzipped CSV: 40 events of 2 hours, one of them an NDJSON event again.
    let mut csv = String::from("id,account,sku,quantity,time\n");
    for i in 0..40 {
        let id = if i == 0 {
            "up-0".to_owned()
        } else {
            format!("upc-{i}")
        };
        csv.push_str(&format!("{id},acme,dbco.db.hour,2,{}\n", time.to_rfc3339()));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    let (status, body) = upload(gz.finish().unwrap(), "text/csv", true).await;
    assert_eq!(
        (status, &body["accepted"]),
        (200, &serde_json::json!(40)),
        "{body}"
    );

    // Not a format it takes, and not a key that may send usage.
    let (status, body) = upload(b"{}".to_vec(), "application/json", false).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let r = http
        .post(&url)
        .bearer_auth(&seeded.keys.acme)
        .header("content-type", "text/csv")
        .body("id\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // 120 × 0.5 h + 39 × 2 h (up-0 counted once) = 138 h at 0.2475 = 34.155 → 34.16.
    let period = time.format("%Y-%m").to_string();
    let key = ("acme".to_owned(), period);
    let expected = std::collections::BTreeMap::from([(key.clone(), "34.16".parse().unwrap())]);
    let bills = wait_for_totals(
        http,
        &seeded.invoicing,
        &seeded.keys.finance,
        &expected,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(bills[&key]["total"], "34.16");

    // The same upload again: accepted again, billed once.
    let (status, body) = upload(ndjson.into_bytes(), "application/x-ndjson", false).await;
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(120)));
    wait_until_rated(h, Duration::from_secs(60)).await;
    assert_eq!(counted(&h.pool).await, 159);
    let bills = wait_for_totals(
        http,
        &seeded.invoicing,
        &seeded.keys.finance,
        &expected,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(bills[&key]["total"], "34.16");
}
