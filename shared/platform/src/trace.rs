//! Distributed traces: an event's id followed from the collector through
//! rating to its invoice line, exported with OpenTelemetry over OTLP/HTTP.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; then every service exports
//! its spans in batches from a thread of its own. The context crosses Kafka
//! as a W3C `traceparent` header on each usage and statement message, and
//! comes into the collector in the HTTP request's `traceparent` header.
//! The spans and their attributes are listed in `docs/operations.md`.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use std::sync::OnceLock;

pub use opentelemetry::trace::{Link, SpanKind as Kind, Status};
pub use opentelemetry::KeyValue as Attribute;
pub use opentelemetry_sdk::trace::Span;

/// The header (HTTP and Kafka) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

static TRACER: OnceLock<(SdkTracerProvider, Tracer)> = OnceLock::new();

/// Flushes the spans still buffered when dropped (at the end of `main`).
#[must_use = "the spans buffered at exit are lost when this is dropped early"]
pub struct Tracing(());

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some((provider, _)) = TRACER.get() {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error = %err, "flushing the last traces failed");
            }
        }
    }
}

/// Starts the exporter when an OTLP endpoint is configured; `service` is
/// the `service.name` unless `OTEL_SERVICE_NAME` says otherwise. The other
/// standard variables apply: `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`,
/// the default, or `http/json`), `OTEL_EXPORTER_OTLP_HEADERS`,
/// `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`.
pub fn init(service: &str) -> anyhow::Result<Tracing> {
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v == "true");
    if !configured || disabled || TRACER.get().is_some() {
        return Ok(Tracing(()));
    }
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Err(_) | Ok("") | Ok("http/protobuf") => Protocol::HttpBinary,
        Ok("http/json") => Protocol::HttpJson,
        Ok(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL is {other:?}: Tally exports over http/protobuf or http/json (point it at an OpenTelemetry Collector's OTLP/HTTP port, 4318)"
        ),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .map_err(|e| anyhow::anyhow!("the OTLP trace exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("tally");
    let _ = TRACER.set((provider, tracer));
    tracing::info!(service, "exporting traces over OTLP");
    Ok(Tracing(()))
}

/// The tracer, when traces are exported; `None` costs nothing else.
pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get().map(|(_, tracer)| tracer)
}

/// Whether spans are made at all.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The context a `traceparent` value names (an empty context when absent or
/// malformed: the span then starts a trace of its own).
pub fn parent(traceparent: Option<&str>) -> Context {
    struct One<'a>(Option<&'a str>);
    impl Extractor for One<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            if key == TRACEPARENT {
                self.0
            } else {
                None
            }
        }
        fn keys(&self) -> Vec<&str> {
            vec![TRACEPARENT]
        }
    }
    TraceContextPropagator::new().extract_with_context(&Context::new(), &One(traceparent))
}

/// The `traceparent` value that makes the next hop a child of `span`.
pub fn traceparent(span: &Span) -> String {
    let context = span.span_context();
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// A link to `span` (from a span that it caused, in another trace).
pub fn link_to(span: &Span) -> Link {
    Link::with_context(span.span_context().clone())
}

/// Starts a span named `name` under `parent`, with `attributes` and `links`.
pub fn start(
    tracer: &Tracer,
    name: &'static str,
    kind: SpanKind,
    parent: &Context,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
) -> Span {
    tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .with_links(links)
        .start_with_context(tracer, parent)
}

/// A context whose current span is `span`'s (for its children).
pub fn context_of(span: &Span) -> Context {
    Context::new().with_remote_span_context(span.span_context().clone())
}

/// Marks `span` failed with `message`.
pub fn fail(span: &mut Span, message: String) {
    span.set_status(Status::error(message));
}

/// Ends `span` now (it is exported with the next batch).
pub fn end(mut span: Span) {
    span.end();
}

/// Records `name` with `attributes` on `span` (an invoice line, say).
pub fn event(span: &mut Span, name: &'static str, attributes: Vec<KeyValue>) {
    span.add_event(name, attributes);
}

/// Exports every span ended so far (tests, and before a planned exit).
pub fn flush() {
    if let Some((provider, _)) = TRACER.get() {
        if let Err(err) = provider.force_flush() {
            tracing::warn!(error = %err, "flushing traces failed");
        }
    }
}
