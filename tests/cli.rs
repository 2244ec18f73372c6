//! The CLI starts nothing local unless asked, and a configuration error
//! stops it at once with one clear line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn tally(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tally"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_URL_FILE")
        .env_remove("KAFKA_BROKERS")
        .env("RUST_LOG", "warn")
        .env("TALLY_LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[test]
fn up_without_a_database_or_brokers_fails_instead_of_starting_local_ones() {
    let out = tally(&["up"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: DATABASE_URL is not set: set it to PostgreSQL (or DATABASE_URL_FILE, a file holding \
         it), or pass --embedded to use a local one (started if none runs; for development)\n"
    );
    let out = tally(
        &["dlq-replay"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/tally")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: KAFKA_BROKERS is not set: set it to the Kafka bootstrap servers, or pass \
         --embedded to use a local one (started if none runs; for development)\n"
    );
}

#[test]
fn a_bad_setting_fails_at_start_with_one_line() {
    let out = tally(
        &["up"],
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/tally"),
            ("KAFKA_BROKERS", "127.0.0.1:1"),
            ("TALLY_RATING_LANES", "0"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: invalid value for TALLY_RATING_LANES: \"0\" (must be at least 1)\n"
    );
}

#[test]
fn a_price_that_cannot_be_stored_exactly_is_refused_not_rounded() {
    let out = tally(
        &[
            "set-price",
            "--sku",
            "cloud.vm.hour",
            "--currency",
            "USD",
            "--unit-price",
            "0.00000000000000000000000000001",
        ],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/tally")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "invalid value '0.00000000000000000000000000001' for '--unit-price <UNIT_PRICE>': \"0.00000000000000000000000000001\" has more than 28 decimal places and cannot be stored exactly"
        ),
        "{}",
        stderr(&out)
    );
}
