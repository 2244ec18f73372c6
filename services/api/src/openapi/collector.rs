//! The collector's operations: `POST /v1/events`, `POST /v1/imports` and
//! the usage corrections (`POST /v1/events/{id}/cancel`, `…/amend`,
//! `POST /v1/backfills`). The API serves the
//! document of every service but does not link the collector (nor Kafka),
//! so the collector's operations are documented here; `tests/openapi.rs`
//! sends each documented operation to the service that owns it, so this one
//! cannot document a route the collector does not have. Its codes are the
//! collector's (`tally_collector::error::ApiError`, the per-event
//! `Rejection` codes), not the API's.

use super::{
    AmendRequest, BackfillRequest, CancelRequest, CorrectionAccepted, Error, EventBatch,
    ImportResponse, IngestResponseRef, UsageEventRef,
};

/// The collector's ingest (`tally_collector::ingest`), documented.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "collector",
    summary = "Send usage: one CloudEvent (structured or binary content mode) or a batch (1 to 1,000, at most 1 MiB, each event at most 256 KiB); answered after the broker acknowledged every accepted event",
    description = "A batch answers 202 with each event's result, refused events included. A single event (one JSON object, or binary content mode: the attributes in `ce-*` headers, percent-encoded, and the event's `data` as the JSON body) that is refused answers 422 (413 for `event_too_large`) with the event's code in `error.code`.",
    request_body(content(
        (inline(UsageEventRef) = "application/cloudevents+json"),
        (inline(EventBatch) = "application/cloudevents-batch+json"),
    )),
    responses(
        (status = 202, description = "Per-event results in request order", body = inline(IngestResponseRef)),
        (status = 400, description = "Error; `error.code` is one of: `malformed`, `invalid_request`", body = Error),
        (status = 401, description = "Error; `error.code` is one of: `unauthorized`", body = Error),
        (status = 403, description = "Error; `error.code` is one of: `forbidden`", body = Error),
        (status = 413, description = "Error; `error.code` is one of: `batch_too_large`, `payload_too_large`, `event_too_large` (a single event over 256 KiB)", body = Error),
        (status = 415, description = "Error; `error.code` is one of: `unsupported_media_type`", body = Error),
        (status = 422, description = "A single event refused; `error.code` is its per-event code (`malformed`, `source_mismatch`, `quantity_invalid`, `time_out_of_window`, `unknown_sku`, `sku_not_owned`, `account_unknown`, `dimension_invalid`, `amount_overflow`)", body = Error),
        (status = 503, description = "Error; `error.code` is one of: `broker_unavailable`, `catalog_unavailable`. No event of the request is accepted; retry the whole request after `Retry-After` seconds. After `catalog_unavailable` nothing was produced; after `broker_unavailable` some events may be on the broker already, and a retry is still safe: each provider and event `id` is billed once.", body = Error),
    ),
    security(("bearer" = [])),
)]
pub fn events() {}

/// The collector's import of a provider's file (`tally_collector::import`),
/// documented.
#[utoipa::path(
    post,
    path = "/v1/imports",
    tag = "collector",
    summary = "Import a file of usage a provider missed sending: NDJSON (one CloudEvent a line) or CSV (header `id,account,sku,quantity,time`, plus `dimension.<name>` columns), gzipped with `Content-Encoding: gzip` or not, up to 1 GiB; every line passes the rules of `POST /v1/events`",
    description = "The body is read as it arrives and imported 5,000 lines at a time, each chunk acknowledged by the brokers before the next is read. The answer counts the lines, the accepted events and the refused lines, and lists every refused line (its number, the event's id, its code and message) up to 10,000. A rerun of the same file is safe: each provider and event `id` is billed once.",
    request_body(content(
        (String = "application/x-ndjson"),
        (String = "text/csv"),
    )),
    responses(
        (status = 200, description = "What was imported", body = ImportResponse),
        (status = 400, description = "Error; `error.code` is one of: `malformed` (the upload could not be read past a line, e.g. a broken gzip stream or CSV header; the lines before it are imported)", body = Error),
        (status = 401, description = "Error; `error.code` is one of: `unauthorized`", body = Error),
        (status = 403, description = "Error; `error.code` is one of: `forbidden`", body = Error),
        (status = 413, description = "Error; `error.code` is one of: `payload_too_large` (over 1 GiB)", body = Error),
        (status = 415, description = "Error; `error.code` is one of: `unsupported_media_type` (not `application/x-ndjson` or `text/csv`, or a `Content-Encoding` other than gzip)", body = Error),
        (status = 503, description = "Error; `error.code` is one of: `import_interrupted` (the broker or the catalog did not answer; the lines before the one named are imported), `catalog_unavailable`. Rerun the whole file after `Retry-After` seconds: nothing is billed twice.", body = Error),
    ),
    security(("bearer" = [])),
)]
pub fn imports() {}

const CORRECTION_DESCRIPTION: &str = "Checked against the events rating counted, then produced to `usage.events` keyed by the account, so rating applies it in order with the account's usage; answered after the broker acknowledged it. In an open period the period is restated; in a sealed one the change is billed on the account's next open invoice as an adjustment line naming the sealed period (as late usage is). Rating checks it again when it applies it and lists it, applied or refused with its code, in `GET /v1/provider/corrections`. A correction is possible within the ingest window (`TALLY_INGEST_MAX_AGE_HOURS`, the dedupe window) of the event's time. A cancelled event's id stays counted: sending it again is a duplicate.";

/// A provider cancels one of its counted events (`tally_collector::corrections::cancel`).
#[utoipa::path(
    post,
    path = "/v1/events/{id}/cancel",
    tag = "collector",
    summary = "Cancel a counted usage event of the calling provider, with a reason",
    description = CORRECTION_DESCRIPTION,
    params(("id" = String, Path, description = "The event's id (CloudEvents `id`)")),
    request_body(content = inline(CancelRequest), content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; rating applies it next", body = inline(CorrectionAccepted)),
        (status = 400, description = "Error; `error.code` is one of: `malformed`, `invalid_request`", body = Error),
        (status = 401, description = "Error; `error.code` is one of: `unauthorized`", body = Error),
        (status = 403, description = "Error; `error.code` is one of: `forbidden`, `event_not_owned` (another provider sent it)", body = Error),
        (status = 404, description = "Error; `error.code` is one of: `unknown_event` (no event with this id was counted for the provider; an event accepted moments ago may not be rated yet)", body = Error),
        (status = 413, description = "Error; `error.code` is one of: `payload_too_large`", body = Error),
        (status = 422, description = "Error; `error.code` is one of: `reason_missing`, `already_cancelled`, `outside_window`", body = Error),
        (status = 503, description = "Error; `error.code` is one of: `broker_unavailable`, `catalog_unavailable`. Retry after `Retry-After` seconds.", body = Error),
    ),
    security(("bearer" = [])),
)]
pub fn cancel() {}

/// A provider amends one of its counted events (`tally_collector::corrections::amend`).
#[utoipa::path(
    post,
    path = "/v1/events/{id}/amend",
    tag = "collector",
    summary = "Amend a counted usage event of the calling provider: its quantity and dimensions from now on, with a reason",
    description = CORRECTION_DESCRIPTION,
    params(("id" = String, Path, description = "The event's id (CloudEvents `id`)")),
    request_body(content = inline(AmendRequest), content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; rating applies it next", body = inline(CorrectionAccepted)),
        (status = 400, description = "Error; `error.code` is one of: `malformed`, `invalid_request`", body = Error),
        (status = 401, description = "Error; `error.code` is one of: `unauthorized`", body = Error),
        (status = 403, description = "Error; `error.code` is one of: `forbidden`, `event_not_owned` (another provider sent it)", body = Error),
        (status = 404, description = "Error; `error.code` is one of: `unknown_event`", body = Error),
        (status = 413, description = "Error; `error.code` is one of: `payload_too_large`", body = Error),
        (status = 422, description = "Error; `error.code` is one of: `reason_missing`, `quantity_invalid`, `dimension_invalid`, `already_cancelled`, `outside_window`", body = Error),
        (status = 503, description = "Error; `error.code` is one of: `broker_unavailable`, `catalog_unavailable`. Retry after `Retry-After` seconds.", body = Error),
    ),
    security(("bearer" = [])),
)]
pub fn amend() {}

/// A provider replaces its usage of a window (`tally_collector::corrections::backfill`).
#[utoipa::path(
    post,
    path = "/v1/backfills",
    tag = "collector",
    summary = "Replace the calling provider's usage of an account in a past window `[start, end)` by the events given (up to 1,000, at most 1 MiB), with a reason, in one operation",
    description = CORRECTION_DESCRIPTION,
    request_body(content = inline(BackfillRequest), content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted; rating applies it next", body = inline(CorrectionAccepted)),
        (status = 400, description = "Error; `error.code` is one of: `malformed`, `invalid_request`", body = Error),
        (status = 401, description = "Error; `error.code` is one of: `unauthorized`", body = Error),
        (status = 403, description = "Error; `error.code` is one of: `forbidden`", body = Error),
        (status = 413, description = "Error; `error.code` is one of: `batch_too_large`, `payload_too_large`", body = Error),
        (status = 422, description = "Error; `error.code` is one of: `reason_missing`, `account_unknown`, `window_invalid`, `outside_window`, `event_outside_window`, `account_mismatch`, `duplicate_event_id`, `event_id_taken`, or a replacement's per-event code of `POST /v1/events` (the message names its index): the backfill is refused whole", body = Error),
        (status = 503, description = "Error; `error.code` is one of: `broker_unavailable`, `catalog_unavailable`. Retry after `Retry-After` seconds.", body = Error),
    ),
    security(("bearer" = [])),
)]
pub fn backfills() {}

/// The operations served elsewhere: the collector's, and the admin
/// address's probes and metrics.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    events,
    imports,
    cancel,
    amend,
    backfills,
    tally_platform::health::readyz,
    tally_platform::telemetry::metrics_endpoint
))]
pub struct Elsewhere;
