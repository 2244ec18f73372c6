//! Rating's spans, when traces are exported. Each event that came with a
//! `traceparent` header gets a `rating.rate` span in its own trace, naming
//! the statements its batch restated for its account; each statement
//! published gets a `rating.statement` span linked to those `rating.rate`
//! spans, whose context travels to invoicing in the statement's Kafka
//! `traceparent` header.

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use std::collections::BTreeMap;
use tally_domain::usage::UsageMessage;
use tally_platform::kafka;
use tally_platform::trace::{self, Attribute, Kind, Link, Span};

use crate::outcome::HeldStatement;

/// At most this many events are linked from one statement's span.
const MAX_LINKS: usize = 128;

pub struct BatchTrace {
    spans: Vec<Span>,
    /// One per statement, in order: what goes in its Kafka header.
    pub traceparents: Vec<String>,
}

impl BatchTrace {
    /// `None` unless traces are exported.
    pub fn start(batch: &[OwnedMessage], statements: &[HeldStatement]) -> Option<BatchTrace> {
        let tracer = trace::tracer()?;
        let mut restated: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for statement in statements {
            restated
                .entry(statement.account_id.as_str())
                .or_default()
                .push(format!("{} v{}", statement.key(), statement.version));
        }
        let mut spans = Vec::new();
        let mut links: BTreeMap<String, Vec<Link>> = BTreeMap::new();
        for message in batch {
            let Some(traceparent) = kafka::traceparent_of(message) else {
                continue;
            };
            let payload = message.payload().unwrap_or_default();
            let Ok(UsageMessage::Usage(event)) = serde_json::from_slice::<UsageMessage>(payload)
            else {
                continue;
            };
            let account = event.account_id.to_string();
            let span = trace::start(
                tracer,
                "rating.rate",
                Kind::Consumer,
                &trace::parent(Some(traceparent)),
                vec![
                    Attribute::new("tally.event_id", event.event_id.to_string()),
                    Attribute::new("tally.account", account.clone()),
                    Attribute::new("tally.sku", event.sku.to_string()),
                    Attribute::new(
                        "tally.statements",
                        restated
                            .get(account.as_str())
                            .map(|s| s.join(", "))
                            .unwrap_or_default(),
                    ),
                ],
                Vec::new(),
            );
            let account_links = links.entry(account).or_default();
            if account_links.len() < MAX_LINKS {
                account_links.push(trace::link_to(&span));
            }
            spans.push(span);
        }
        let mut traceparents = Vec::with_capacity(statements.len());
        for statement in statements {
            let span = trace::start(
                tracer,
                "rating.statement",
                Kind::Producer,
                &trace::parent(None),
                vec![
                    Attribute::new("tally.statement", statement.key()),
                    Attribute::new("tally.statement.version", statement.version),
                    Attribute::new("tally.account", statement.account_id.to_string()),
                ],
                links
                    .get(statement.account_id.as_str())
                    .cloned()
                    .unwrap_or_default(),
            );
            traceparents.push(trace::traceparent(&span));
            spans.push(span);
        }
        Some(BatchTrace {
            spans,
            traceparents,
        })
    }

    /// Ends every span; `failure` marks them failed.
    pub fn end(self, failure: Option<String>) {
        for mut span in self.spans {
            if let Some(message) = &failure {
                trace::fail(&mut span, message.clone());
            }
            trace::end(span);
        }
    }
}
