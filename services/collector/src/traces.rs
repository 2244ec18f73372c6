//! The collector's spans, when traces are exported: `collector.ingest` for
//! a request (under its `traceparent` header), and under it one
//! `collector.accept` per accepted event, whose context travels to rating
//! in the event's Kafka `traceparent` header.

use axum::http::HeaderMap;
use tally_domain::{ProviderId, UsageEvent};
use tally_platform::trace::{self, Attribute, Kind, Span};

pub struct IngestTrace {
    request: Span,
    events: Vec<Span>,
    /// One per accepted event, in order: what goes in its Kafka header.
    pub traceparents: Vec<String>,
}

impl IngestTrace {
    /// `None` unless traces are exported.
    pub fn start(
        headers: &HeaderMap,
        provider: &ProviderId,
        received: usize,
        accepted: &[UsageEvent],
    ) -> Option<IngestTrace> {
        let tracer = trace::tracer()?;
        let incoming = headers
            .get(trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok());
        let request = trace::start(
            tracer,
            "collector.ingest",
            Kind::Server,
            &trace::parent(incoming),
            vec![
                Attribute::new("tally.provider", provider.to_string()),
                Attribute::new("tally.events.received", received as i64),
                Attribute::new("tally.events.accepted", accepted.len() as i64),
            ],
            Vec::new(),
        );
        let parent = trace::context_of(&request);
        let events: Vec<Span> = accepted
            .iter()
            .map(|event| {
                trace::start(
                    tracer,
                    "collector.accept",
                    Kind::Producer,
                    &parent,
                    vec![
                        Attribute::new("tally.event_id", event.event_id.to_string()),
                        Attribute::new("tally.account", event.account_id.to_string()),
                        Attribute::new("tally.sku", event.sku.to_string()),
                    ],
                    Vec::new(),
                )
            })
            .collect();
        let traceparents = events.iter().map(trace::traceparent).collect();
        Some(IngestTrace {
            request,
            events,
            traceparents,
        })
    }

    /// Ends every span; `failure` marks them failed (nothing was accepted).
    pub fn end(self, failure: Option<&str>) {
        for mut span in self.events.into_iter().chain([self.request]) {
            if let Some(message) = failure {
                trace::fail(&mut span, message.to_owned());
            }
            trace::end(span);
        }
    }
}
