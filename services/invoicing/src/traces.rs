//! Invoicing's spans, when traces are exported: one `invoicing.apply` per
//! statement message that came with a `traceparent` header, a child of
//! rating's `rating.statement` span, naming the invoice it landed on and
//! recording each of its lines (position and SKU) as an event.

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use sqlx::PgPool;
use tally_domain::Statement;
use tally_platform::kafka;
use tally_platform::trace::{self, Attribute, Kind};
use uuid::Uuid;

/// Records the spans of `batch`, whose statements were applied.
pub async fn applied(pool: &PgPool, batch: &[OwnedMessage]) {
    let Some(tracer) = trace::tracer() else {
        return;
    };
    let traced: Vec<(&str, Statement)> = batch
        .iter()
        .filter_map(|m| {
            let traceparent = kafka::traceparent_of(m)?;
            let statement = serde_json::from_slice(m.payload()?).ok()?;
            Some((traceparent, statement))
        })
        .collect();
    if traced.is_empty() {
        return;
    }
    // Which invoice each statement is on, and at which version it is now.
    let invoices: Vec<(String, chrono::DateTime<chrono::Utc>, Uuid, i64)> = sqlx::query_as(
        "SELECT i.account_id, i.period_start, i.id, i.statement_version
         FROM UNNEST($1::text[], $2::timestamptz[]) AS k(a, s)
         JOIN invoices i ON i.account_id = k.a AND i.period_start = k.s",
    )
    .bind(
        traced
            .iter()
            .map(|(_, s)| s.account_id.to_string())
            .collect::<Vec<_>>(),
    )
    .bind(
        traced
            .iter()
            .map(|(_, s)| s.period.start())
            .collect::<Vec<_>>(),
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for (traceparent, statement) in &traced {
        let invoice = invoices.iter().find(|(account, start, _, _)| {
            account == statement.account_id.as_str() && *start == statement.period.start()
        });
        let mut attributes = vec![
            Attribute::new("tally.statement", statement.key()),
            Attribute::new("tally.statement.version", statement.version),
        ];
        if let Some((_, _, id, version)) = invoice {
            attributes.push(Attribute::new("tally.invoice_id", id.to_string()));
            attributes.push(Attribute::new("tally.invoice.statement_version", *version));
        }
        let mut span = trace::start(
            tracer,
            "invoicing.apply",
            Kind::Consumer,
            &trace::parent(Some(traceparent)),
            attributes,
            Vec::new(),
        );
        for (position, line) in statement.lines.iter().enumerate() {
            trace::event(
                &mut span,
                "invoice line",
                vec![
                    Attribute::new("tally.line.position", position as i64),
                    Attribute::new("tally.sku", line.sku.to_string()),
                    Attribute::new("tally.line.amount", line.amount.to_string()),
                ],
            );
        }
        trace::end(span);
    }
}
