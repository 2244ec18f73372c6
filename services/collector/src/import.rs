//! Usage a provider missed sending, from files: NDJSON (one CloudEvent a
//! line, as `POST /v1/events` takes it) or CSV (a header naming the
//! columns `id`, `account`, `sku`, `quantity`, `time` in RFC 3339, and any
//! `dimension.<name>` columns), gzipped or not. Shared by `tally import`
//! (files on disk) and `POST /v1/imports` (a provider's upload).
//!
//! Each line passes exactly the collector's rules ([`validate`]); accepted
//! events go to `usage.events` a chunk at a time, each chunk acknowledged
//! by the brokers before the next is read. A rerun is safe: rating bills
//! each (provider, event id) once.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::io::BufRead;
use std::time::Duration;
use tally_domain::ProviderId;

use crate::error::ApiError;
use crate::event::EventRejection;
use crate::ingest::{accepted_events, id_of, validate};
use crate::lookup::Lookup;
use crate::sink::EventSink;

/// Lines validated and published at a time.
pub const CHUNK: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    /// The format and whether it is gzipped, told by a file's name
    /// (`.ndjson`, `.jsonl`, `.csv`, each optionally `.gz`).
    pub fn of_file_name(name: &str) -> Option<(Format, bool)> {
        let name = name.to_ascii_lowercase();
        let (name, gzip) = match name.strip_suffix(".gz") {
            Some(inner) => (inner.to_owned(), true),
            None => (name, false),
        };
        if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
            Some((Format::Ndjson, gzip))
        } else if name.ends_with(".csv") {
            Some((Format::Csv, gzip))
        } else {
            None
        }
    }

    /// The format of an upload's media type (`application/x-ndjson`,
    /// `application/jsonl`, `text/csv`).
    pub fn of_media_type(essence: &str) -> Option<Format> {
        match essence {
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines" => Some(Format::Ndjson),
            "text/csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// One line of input: its number (1-based, the CSV header is line 1) and
/// the event as JSON text, or why it is not one.
pub type Line = (u64, Result<Box<RawValue>, EventRejection>);

/// The input's lines, each an event or why it is not one; a read error
/// (a broken gzip stream, a connection that dropped) ends it.
pub fn lines(
    reader: Box<dyn BufRead + Send>,
    format: Format,
    provider: &ProviderId,
) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<Line>> + Send>> {
    Ok(match format {
        Format::Ndjson => Box::new(
            reader
                .lines()
                .enumerate()
                .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(|(n, line)| {
                    let parsed = RawValue::from_string(line?)
                        .map_err(|e| EventRejection::new("malformed", format!("not JSON: {e}")));
                    Ok((n as u64 + 1, parsed))
                }),
        ),
        Format::Csv => {
            let mut rows = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
            let header = rows.headers().map_err(std::io::Error::other)?.clone();
            let provider = provider.clone();
            Box::new(rows.into_records().enumerate().map(move |(n, row)| {
                // Line 1 is the header.
                let event = match row {
                    Ok(row) => csv_event(&provider, &header, &row),
                    Err(e) if e.is_io_error() => return Err(std::io::Error::other(e)),
                    Err(e) => Err(EventRejection::new("malformed", e.to_string())),
                };
                Ok((n as u64 + 2, event))
            }))
        }
    })
}

/// A CSV row as the CloudEvent the collector would have received.
pub fn csv_event(
    provider: &ProviderId,
    header: &csv::StringRecord,
    row: &csv::StringRecord,
) -> Result<Box<RawValue>, EventRejection> {
    let mut data = Map::new();
    let mut dimensions = Map::new();
    let mut event = Map::new();
    for (column, value) in header.iter().zip(row.iter()) {
        match column {
            "id" => {
                event.insert("id".into(), json!(value));
            }
            "account" => {
                event.insert("subject".into(), json!(value));
            }
            "time" => {
                event.insert("time".into(), json!(value));
            }
            "sku" | "quantity" => {
                data.insert(column.into(), json!(value));
            }
            other => match other.strip_prefix("dimension.") {
                Some(name) if !value.is_empty() => {
                    dimensions.insert(name.into(), json!(value));
                }
                Some(_) => {}
                None => {
                    return Err(EventRejection::new(
                        "malformed",
                        format!("unknown column {other:?}"),
                    ))
                }
            },
        }
    }
    if !dimensions.is_empty() {
        data.insert("dimensions".into(), Value::Object(dimensions));
    }
    event.insert("specversion".into(), json!("1.0"));
    event.insert("source".into(), json!(provider.as_str()));
    event.insert("type".into(), json!("com.tally.usage"));
    event.insert("data".into(), Value::Object(data));
    serde_json::value::to_raw_value(&Value::Object(event))
        .map_err(|e| EventRejection::new("malformed", e.to_string()))
}

/// A refused line: its number, the event's id when it has one, the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub line: u64,
    pub id: Option<String>,
    pub code: &'static str,
    pub message: String,
}

/// What importing one chunk did.
#[derive(Debug, Default)]
pub struct ChunkOutcome {
    pub accepted: u64,
    pub refused: Vec<Refusal>,
}

/// Where an import's events go and the rules they pass.
pub struct Importer<'a> {
    pub lookup: &'a Lookup,
    pub sink: &'a dyn EventSink,
    pub provider: &'a ProviderId,
    pub max_age: Duration,
    pub max_future: Duration,
}

impl Importer<'_> {
    /// Validates `chunk` and publishes its accepted events; returns once
    /// the brokers acknowledged every one of them.
    pub async fn chunk(&self, chunk: &[Line]) -> Result<ChunkOutcome, ApiError> {
        let now = chrono::Utc::now();
        let parsed: Vec<&RawValue> = chunk
            .iter()
            .filter_map(|(_, l)| l.as_deref().ok())
            .collect();
        let mut validated = validate(
            self.lookup,
            self.provider,
            &parsed,
            now,
            self.max_age,
            self.max_future,
        )
        .await?
        .into_iter();
        let outcomes: Vec<_> = chunk
            .iter()
            .map(|(_, l)| match l {
                Ok(_) => validated
                    .next()
                    .unwrap_or_else(|| Err(EventRejection::new("malformed", "not validated"))),
                Err(refused) => Err(refused.clone()),
            })
            .collect();
        let refused = chunk
            .iter()
            .zip(&outcomes)
            .filter_map(|((number, line), outcome)| {
                let refused = outcome.as_ref().err()?;
                Some(Refusal {
                    line: *number,
                    id: line.as_ref().ok().and_then(|raw| id_of(raw)),
                    code: refused.code,
                    message: refused.message.clone(),
                })
            })
            .collect();
        let accepted = accepted_events(self.provider, &outcomes, now);
        if !accepted.is_empty() {
            self.sink
                .publish(&accepted, &[])
                .await
                .map_err(|e| match e {
                    crate::sink::SinkError::Broker(cause) => ApiError::BrokerUnavailable(cause),
                    other => ApiError::Internal(other.into()),
                })?;
        }
        Ok(ChunkOutcome {
            accepted: accepted.len() as u64,
            refused,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_row_is_the_cloudevent_the_collector_takes() {
        let provider = ProviderId::parse("dbco").unwrap();
        let header = csv::StringRecord::from(vec![
            "id",
            "account",
            "sku",
            "quantity",
            "time",
            "dimension.region",
        ]);
        let row = csv::StringRecord::from(vec![
            "e-1",
            "acme",
            "dbco.db.hour",
            "2.5",
            "2026-11-30T10:00:00Z",
            "eu",
        ]);
        let event: Value =
            serde_json::from_str(csv_event(&provider, &header, &row).unwrap().get()).unwrap();
        assert_eq!(
            event,
            json!({"specversion": "1.0", "id": "e-1", "source": "dbco", "type": "com.tally.usage",
                   "subject": "acme", "time": "2026-11-30T10:00:00Z",
                   "data": {"sku": "dbco.db.hour", "quantity": "2.5", "dimensions": {"region": "eu"}}})
        );
        let unknown = csv::StringRecord::from(vec!["id", "colour"]);
        let row = csv::StringRecord::from(vec!["e-2", "red"]);
        assert_eq!(
            csv_event(&provider, &unknown, &row).unwrap_err().code,
            "malformed"
        );
    }

    #[test]
    fn the_format_is_told_by_the_file_name_or_the_media_type() {
        assert_eq!(
            Format::of_file_name("a/usage.ndjson.gz"),
            Some((Format::Ndjson, true))
        );
        assert_eq!(
            Format::of_file_name("usage.CSV"),
            Some((Format::Csv, false))
        );
        assert_eq!(Format::of_file_name("usage.txt"), None);
        assert_eq!(Format::of_media_type("text/csv"), Some(Format::Csv));
        assert_eq!(
            Format::of_media_type("application/x-ndjson"),
            Some(Format::Ndjson)
        );
        assert_eq!(Format::of_media_type("application/json"), None);
    }

    #[test]
    fn lines_are_numbered_as_in_the_file_and_blank_ones_skipped() {
        let provider = ProviderId::parse("dbco").unwrap();
        let text = "{\"id\":\"a\"}\n\n{not json\n";
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(text.to_owned()));
        let got: Vec<(u64, Option<&'static str>)> = lines(reader, Format::Ndjson, &provider)
            .unwrap()
            .map(|l| {
                let (n, e) = l.unwrap();
                (n, e.err().map(|r| r.code))
            })
            .collect();
        assert_eq!(got, [(1, None), (3, Some("malformed"))]);
        let csv = "id,account,sku,quantity,time\ne1,acme,s,1,2026-11-30T10:00:00Z\n";
        let reader: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(csv.to_owned()));
        let numbers: Vec<u64> = lines(reader, Format::Csv, &provider)
            .unwrap()
            .map(|l| l.unwrap().0)
            .collect();
        assert_eq!(numbers, [2]);
    }
}
