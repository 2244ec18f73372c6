//! The OpenAPI document the API serves is the one in schemas/ (which
//! `tally openapi` generates from the code), every path it documents exists
//! on the service that owns it, and each answer there is documented, its
//! body valid against the document's schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::Value;
use tally::up::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_exists_and_the_served_document_is_the_file() {
    let h = Harness::new().await;
    let running = h
        .start(&[Service::Collector, Service::Invoicing, Service::Api])
        .await;
    let collector = running.collector_url().unwrap();
    let api = running.api_url().unwrap();
    let admin_url = running.admin_url().unwrap();
    let admin = tally::admin::create_staff_key(&h.pool, "admin")
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let file = openapi_file();
    let served: Value = http
        .get(format!("{api}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served, file,
        "served /openapi.json differs from schemas/openapi.json"
    );
    assert_eq!(file["openapi"], "3.1.0");
    // The schemas it refers to are served beside it, so that a client that
    // reads it from the API resolves them.
    let mut references = Vec::new();
    external_references(&file, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let served: Value = http
            .get(format!("{api}/{reference}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = std::fs::read_to_string(format!(
            "{}/../../schemas/{reference}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(
            served,
            serde_json::from_str::<Value>(&text).unwrap(),
            "{reference}"
        );
    }

    let paths = file["paths"].as_object().unwrap();
    assert!(paths.len() >= 18);
    let mut validated = 0;
    for (path, item) in paths {
        // A path's own servers name where it lives (the collector's
        // events, the admin address's probes and metrics); the others are
        // on the document's server, the API.
        let server = item["servers"][0]["url"]
            .as_str()
            .unwrap_or(file["servers"][0]["url"].as_str().unwrap());
        let base = match server {
            "http://{collector}" => &collector,
            "http://{admin}" => &admin_url,
            "http://{api}" => &api,
            other => panic!("{path}: unknown server {other}"),
        };
        let concrete = path
            .replace("{sku}", "x.y")
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{account}", "acme");
        for (method, operation) in item.as_object().unwrap() {
            if method == "servers" {
                continue;
            }
            assert!(
                operation["responses"].is_object(),
                "{method} {path} documents its responses"
            );
            let request = match method.as_str() {
                "get" => http.get(format!("{base}{concrete}")),
                "post" => http
                    .post(format!("{base}{concrete}"))
                    .header("content-type", "application/json")
                    .body("{}"),
                other => panic!("undocumented method {other}"),
            };
            let response = request.bearer_auth(&admin).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            // The router's own fallback answers 404 `unknown_route` (or an
            // empty body, on the admin address) and 405; the handlers' answers
            // (even 404 not_found) carry their own codes.
            let code = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_owned));
            assert!(
                !(status == 404 && (body.is_empty() || code.as_deref() == Some("unknown_route")))
                    && status != 405,
                "{method} {path}: {status} {body}"
            );
            // The answer is one the document gives for the operation, and
            // its body validates against the schema given for it.
            let documented = &operation["responses"][status.to_string()];
            assert!(
                documented.is_object(),
                "{method} {path}: {status} is not documented ({body})"
            );
            let schema = &documented["content"]["application/json"]["schema"];
            if !schema.is_null() {
                let body: Value = serde_json::from_str(&body).unwrap();
                let mut root = schema.clone();
                root["components"] = file["components"].clone();
                let schemas = root["components"]["schemas"].as_object_mut().unwrap();
                // Other documents, which no answer here refers to.
                schemas.remove("UsageEvent");
                schemas.remove("IngestResponse");
                let validator = jsonschema::validator_for(&root).unwrap();
                let errors: Vec<String> = validator
                    .iter_errors(&body)
                    .map(|e| e.to_string())
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{method} {path} {status}: {errors:?} in {body}"
                );
                validated += 1;
            }
        }
    }
    // Every operation answered JSON here (an error, mostly) but the bill
    // pages and CSVs, the sign-in and sign-out, the two JSON Schemas and
    // the text of /healthz and /metrics.
    assert_eq!(validated, 69, "answers validated");
    running.stop().await.unwrap();
}

/// Every route the services register by path is in the document (so a new
/// endpoint cannot ship undocumented): the collector's, the probes', and
/// those of the API not yet taken from their `#[utoipa::path]` (`routes!`,
/// which cannot register an undocumented route).
#[test]
fn every_registered_route_is_documented() {
    let file = openapi_file();
    let paths = file["paths"].as_object().unwrap();
    let mut registered = 0;
    for source in [
        "collector/src/startup.rs",
        "api/src/startup.rs",
        "../shared/platform/src/health.rs",
    ] {
        let text =
            std::fs::read_to_string(format!("{}/../{source}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for piece in text.split(".route(").skip(1) {
            let path = piece
                .trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap();
            registered += 1;
            assert!(
                paths.contains_key(path),
                "{source}: {path} is not documented"
            );
        }
    }
    // The collector's two and the admin address's three at least.
    assert!(registered >= 5, "found {registered} routes");
}

/// The `$ref`s in `value` that name another document.
fn external_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match item.as_str() {
                    Some(reference) if key == "$ref" && !reference.starts_with('#') => {
                        found.push(reference.to_owned())
                    }
                    _ => external_references(item, found),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| external_references(item, found)),
        _ => {}
    }
}

/// `schemas/openapi.json`, parsed.
fn openapi_file() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap()
}
