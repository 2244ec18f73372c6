//! A router served on a free port (127.0.0.1:0) over a fresh database, with
//! keys of every role.

use reqwest::StatusCode;
use rust_decimal_macros::dec;
use serde_json::Value;
use sqlx::PgPool;
use tally_api::customer::links::Signer;
use tally_api::startup;
use tally_domain::{AccountId, Currency, ProviderId, ProviderKind};
use tally_invoicing::apply_statements;
use tally_platform::auth::{create_key, Principal};
use tally_platform::onboarding;

use super::*;

pub struct Keys {
    pub admin: String,
    pub finance: String,
    pub dbco: String,
    pub acme: String,
    pub umbrella: String,
}

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub keys: Keys,
    pub pool: PgPool,
}

impl Server {
    /// Serves the router on a free port; catalog: partner dbco, accounts acme
    /// and umbrella (USD), one admin and one finance key.
    pub async fn start() -> Server {
        let pool = fresh_pool().await;
        let mut tx = pool.begin().await.unwrap();
        let usd = Currency::parse("USD").unwrap();
        let dbco = ProviderId::parse("dbco").unwrap();
        let dbco = onboarding::provider(&mut tx, &dbco, "DB Co", ProviderKind::Partner, None);
        let dbco = dbco.await.unwrap().secret;
        let mut account = async |id: &str| {
            let id = AccountId::parse(id).unwrap();
            onboarding::account(&mut tx, &id, id.as_str(), usd)
                .await
                .unwrap()
                .secret
        };
        let acme = account("acme").await;
        let umbrella = account("umbrella").await;
        let admin = create_key(&mut tx, &Principal::Admin).await.unwrap().secret;
        let finance = create_key(&mut tx, &Principal::Finance).await.unwrap();
        tx.commit().await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = startup::router(
            pool.clone(),
            Signer::new(Some("test-secret")).unwrap(),
            "TLY",
            tally_api::bindings::provider::Webhooks(Some(
                tally_platform::binding_outbox::WebhookKey::new("test-webhook-key"),
            )),
            tally_api::provider::PriceNotice(std::time::Duration::ZERO),
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Server {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            keys: Keys {
                admin,
                finance: finance.secret,
                dbco,
                acme,
                umbrella,
            },
            pool,
        }
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// The body of a GET that answers 200 (a page, a CSV) as text.
    pub async fn text(&self, path: &str, key: &str) -> String {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        res.text().await.unwrap()
    }

    /// acme and umbrella each get a November invoice.
    pub async fn with_invoices(self) -> Server {
        let acme = statement(
            "acme",
            "2026-11",
            1,
            vec![
                line(&cloud(), "cloud.vm", dec!(10), dec!(0.25)),
                line(&dbco(), "dbco.db.hour", dec!(2), dec!(0.20)),
            ],
        );
        let umbrella = statement(
            "umbrella",
            "2026-11",
            1,
            vec![line(&dbco(), "dbco.db.hour", dec!(1), dec!(0.20))],
        );
        apply_statements(&self.pool, &[acme, umbrella])
            .await
            .unwrap();
        self
    }

    pub async fn invoice_id(&self, account: &str) -> String {
        let (_, body) = self
            .get(
                &format!("/v1/invoices?account={account}"),
                Some(&self.keys.finance),
            )
            .await;
        body["data"][0]["id"].as_str().unwrap().to_owned()
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}
