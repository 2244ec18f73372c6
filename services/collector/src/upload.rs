//! `POST /v1/imports`: a provider uploads a file of usage it missed
//! sending (NDJSON or CSV, gzipped with `Content-Encoding: gzip` or not),
//! up to [`MAX_IMPORT_BYTES`]. The body is read as it arrives: a thread
//! parses lines while the handler validates and publishes them a chunk at
//! a time (each acknowledged by the brokers before the next), so memory
//! stays bounded whatever the file's size. The answer lists what was
//! imported and every refused line (up to [`MAX_LISTED_REFUSALS`]); a
//! rerun of the same file imports nothing twice.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use futures::TryStreamExt;
use serde::Serialize;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::ApiError;
use crate::import::{lines, Format, Importer, Line, Refusal, CHUNK};
use crate::ingest::{provider_of, IngestState};

/// The largest upload: 1 GiB (as sent, compressed or not).
pub const MAX_IMPORT_BYTES: usize = 1024 * 1024 * 1024;
/// Refused lines listed in the answer at most; the count covers them all.
pub const MAX_LISTED_REFUSALS: usize = 10_000;

#[derive(Debug, Serialize)]
pub struct ImportResponse {
    pub lines: u64,
    pub accepted: u64,
    pub refused: u64,
    /// Every refused line (its number, id, code, message), in file order,
    /// up to [`MAX_LISTED_REFUSALS`].
    pub refusals: Vec<Refusal>,
    /// True when more lines were refused than `refusals` lists.
    pub refusals_truncated: bool,
}

/// What the reading thread hands over: a chunk of lines, or the read error
/// that ended the input.
type Chunk = std::io::Result<Vec<Line>>;

pub async fn post_import(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportResponse>, ApiError> {
    let provider = provider_of(&state.lookup, &headers).await?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_IMPORT_BYTES as u64) {
        return Err(ApiError::PayloadTooLarge(MAX_IMPORT_BYTES));
    }
    let essence = tally_platform::http::media_type(&headers);
    let format = essence
        .as_deref()
        .and_then(Format::of_media_type)
        .ok_or(ApiError::UnsupportedImport)?;
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or_default().trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(_) => return Err(ApiError::UnsupportedImport),
    };

    // A thread reads and parses the body as it arrives; at most two
    // chunks wait for the handler.
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<Chunk>(2);
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let bridge = SyncIoBridge::new(StreamReader::new(stream));
    let reader_provider = provider.clone();
    let reading = tokio::task::spawn_blocking(move || {
        let raw: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(bridge))
        } else {
            Box::new(bridge)
        };
        let reader: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(1 << 20, raw));
        let mut input = match lines(reader, format, &reader_provider) {
            Ok(input) => input,
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let chunk: Chunk = input.by_ref().take(CHUNK).collect();
            let done = matches!(&chunk, Ok(c) if c.is_empty()) || chunk.is_err();
            if sender.blocking_send(chunk).is_err() || done {
                return;
            }
        }
    });

    let importer = Importer {
        lookup: &state.lookup,
        sink: &*state.sink,
        provider: &provider,
        max_age: state.max_age,
        max_future: state.max_future,
    };
    let mut answer = ImportResponse {
        lines: 0,
        accepted: 0,
        refused: 0,
        refusals: Vec::new(),
        refusals_truncated: false,
    };
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk.map_err(|e| {
            if too_large(&e) {
                ApiError::PayloadTooLarge(MAX_IMPORT_BYTES)
            } else {
                ApiError::ImportUnreadable {
                    imported: answer.lines,
                    cause: e.to_string(),
                }
            }
        })?;
        if chunk.is_empty() {
            break;
        }
        let outcome = importer.chunk(&chunk).await.map_err(|e| match e {
            ApiError::BrokerUnavailable(cause) => ApiError::ImportInterrupted {
                imported: answer.lines,
                cause: format!("the broker did not acknowledge every event: {cause}"),
            },
            ApiError::CatalogUnavailable => ApiError::ImportInterrupted {
                imported: answer.lines,
                cause: "the catalog cannot be checked right now".into(),
            },
            other => other,
        })?;
        answer.lines += chunk.len() as u64;
        answer.accepted += outcome.accepted;
        answer.refused += outcome.refused.len() as u64;
        for refused in outcome.refused {
            if answer.refusals.len() < MAX_LISTED_REFUSALS {
                answer.refusals.push(refused);
            } else {
                answer.refusals_truncated = true;
            }
        }
    }
    let _ = reading.await;
    metrics::counter!("tally_import_lines_total").increment(answer.lines);
    Ok(Json(answer))
}

/// Whether a read error is the body passing the route's size limit.
fn too_large(e: &std::io::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = cause {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}
