//! The pipeline over secure connections: PostgreSQL over TLS
//! (`sslmode=verify-full`, a server that refuses anything else) and Kafka
//! over SASL_SSL with SCRAM-SHA-256, the certificates and credentials made
//! for the run. Every invoice is exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::Duration;
use tally::infra::LocalKafka;
use tally::up::Service;
use tally_platform::config::KafkaProperties;

const EVENTS: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_over_tls_postgres_and_sasl_ssl_kafka() {
    // The run's Kafka node has a SASL_SSL listener (`bash deploy/dev.sh test`).
    let dir = std::env::var("TALLY_TEST_KAFKA").expect(
        "TALLY_TEST_KAFKA names the run's Kafka node: run the tests with `bash deploy/dev.sh test`",
    );
    let kafka = LocalKafka::open(std::path::Path::new(&dir)).unwrap();
    let (bootstrap, properties) = kafka
        .secure_client()
        .expect("the run's Kafka has a SASL_SSL listener");
    // What an operator sets: TALLY_KAFKA_<PROPERTY>, the password from a file.
    // In the test's PostgreSQL directory, so it goes with it.
    let pg = PrivatePostgres::start_tls().await;
    let password_file = pg.root.join("kafka-password");
    let mut vars = Vec::new();
    for (property, value) in &properties {
        let name = format!("TALLY_KAFKA_{}", property.to_uppercase().replace('.', "_"));
        if property == "sasl.password" {
            std::fs::write(&password_file, format!("{value}\n")).unwrap();
            vars.push((format!("{name}_FILE"), password_file.display().to_string()));
        } else {
            vars.push((name, value.clone()));
        }
    }
    let kafka_properties = KafkaProperties::from_vars(vars.into_iter()).unwrap();

    // The test's own PostgreSQL takes only TLS connections.
    let server = pg.server();
    let plain = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    );
    assert!(
        tally_platform::db::connect(&plain, 1).await.is_err(),
        "the server refuses a connection without TLS"
    );

    let h = Harness::build(&bootstrap, &server, |config| {
        config.kafka_properties = kafka_properties;
    })
    .await;
    let seeded = Seeded::start_in(h, &Service::ALL, 60).await;
    let accounts = create_accounts(&seeded.h.pool, 4).await;
    let (batches, expected) = usage_stream(&seeded.keys, seeded.now, &accounts, EVENTS, 250);
    let accepted = send_stream(&seeded.http, &seeded.collector, batches, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(accepted, EVENTS as u64);
    assert_exact_invoices(&seeded, &expected, EVENTS, Duration::from_secs(120)).await;

    // The services' own connections use TLS.
    let tls_sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE s.ssl AND a.application_name LIKE 'tally-%'",
    )
    .fetch_one(&seeded.h.pool)
    .await
    .unwrap();
    assert!(
        tls_sessions >= 3,
        "{tls_sessions} TLS sessions of the services"
    );
    report(&format!(
        "secure connections: {EVENTS} events through SASL_SSL (SCRAM-SHA-256) Kafka at {bootstrap} \
         and TLS PostgreSQL (verify-full, {tls_sessions} service connections over TLS), every invoice exact"
    ));
    seeded.running.stop().await.unwrap();
}
