//! `tally import`: usage a provider missed sending, from files. Each line
//! passes exactly the collector's rules (`tally_collector::ingest::validate`:
//! size, schema, time window, SKU ownership, account, billability); accepted
//! events go to `usage.events` like the collector's, a chunk at a time, each
//! chunk acknowledged by the brokers before the next is read. Refused lines
//! are written to a report with their line number, code and message. A
//! rerun is safe: rating bills each (provider, event id) once.
//!
//! Formats, told by the file name (`.ndjson`, `.jsonl`, `.csv`, each
//! optionally `.gz`):
//! - NDJSON: one CloudEvent per line, as `POST /v1/events` takes it;
//! - CSV: a header naming the columns `id`, `account`, `sku`, `quantity`,
//!   `time` (RFC 3339), and any `dimension.<name>` columns.

use anyhow::Context as _;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tally_collector::event::EventRejection;
use tally_collector::ingest::{accepted_events, id_of, validate};
use tally_collector::lookup::Lookup;
use tally_collector::{EventSink, KafkaSink};
use tally_domain::ProviderId;
use tally_platform::Config;

/// Lines validated and published at a time.
pub const CHUNK: usize = 5_000;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: u64,
    pub accepted: u64,
    pub refused: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ndjson,
    Csv,
}

fn format_of(path: &Path) -> anyhow::Result<(Format, bool)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (name, gzip) = match name.strip_suffix(".gz") {
        Some(inner) => (inner.to_owned(), true),
        None => (name, false),
    };
    let format = if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        Format::Ndjson
    } else if name.ends_with(".csv") {
        Format::Csv
    } else {
        anyhow::bail!(
            "{}: name the file .ndjson, .jsonl or .csv (optionally .gz)",
            path.display()
        );
    };
    Ok((format, gzip))
}

/// A file that counts the bytes read from it (the progress bar's measure).
struct Counted {
    file: std::fs::File,
    read: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn open(path: &Path, gzip: bool, read: Arc<AtomicU64>) -> anyhow::Result<Box<dyn BufRead>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file = Counted { file, read };
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
}

/// One line of input: its number and the event as JSON text, or why it is
/// not one.
type Line = (u64, Result<Box<RawValue>, EventRejection>);

/// A CSV row as the CloudEvent the collector would have received.
fn csv_event(
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

/// The lines of `path`, each an event or why it is not one.
fn lines(
    path: &Path,
    provider: &ProviderId,
    read: Arc<AtomicU64>,
) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<Line>>>> {
    let (format, gzip) = format_of(path)?;
    let reader = open(path, gzip, read)?;
    let shown = path.display().to_string();
    Ok(match format {
        Format::Ndjson => Box::new(
            reader
                .lines()
                .enumerate()
                .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(move |(n, line)| {
                    let line = line.with_context(|| format!("reading {shown}"))?;
                    let parsed = RawValue::from_string(line)
                        .map_err(|e| EventRejection::new("malformed", format!("not JSON: {e}")));
                    Ok((n as u64 + 1, parsed))
                }),
        ),
        Format::Csv => {
            let mut rows = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
            let header = rows.headers()?.clone();
            let provider = provider.clone();
            Box::new(rows.into_records().enumerate().map(move |(n, row)| {
                // Line 1 is the header.
                let event = match row {
                    Ok(row) => csv_event(&provider, &header, &row),
                    Err(e) => Err(EventRejection::new("malformed", e.to_string())),
                };
                Ok((n as u64 + 2, event))
            }))
        }
    })
}

/// Imports `files` as `provider`'s usage; refused lines go to `report`
/// (CSV: file, line, id, code, message). `progress` is called after each
/// chunk with the totals so far and the bytes read of the files (of their
/// sizes on disk, [`total_bytes`]).
pub async fn import(
    config: &Config,
    provider: &str,
    files: &[PathBuf],
    report: &mut dyn Write,
    mut progress: impl FnMut(&ImportReport, u64),
) -> anyhow::Result<ImportReport> {
    let provider = ProviderId::parse(provider).map_err(|e| anyhow::anyhow!("--provider: {e}"))?;
    for file in files {
        format_of(file)?;
    }
    let pool = tally_platform::db::connect(&config.database_url, 2).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM providers WHERE id = $1)")
        .bind(provider.as_str())
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(exists, "provider {provider} does not exist");
    let lookup = Lookup::new(pool, config.collector_db_timeout, config.collector_remember);
    let sink = KafkaSink::new(
        tally_platform::kafka::producer(config)?,
        config.topics().usage_events,
    );
    let mut totals = ImportReport::default();
    let read = Arc::new(AtomicU64::new(0));
    writeln!(report, "file,line,id,code,message")?;
    for file in files {
        let name = file.display().to_string();
        let mut input = lines(file, &provider, read.clone())?;
        loop {
            let chunk: Vec<Line> = input.by_ref().take(CHUNK).collect::<anyhow::Result<_>>()?;
            if chunk.is_empty() {
                break;
            }
            let now = chrono::Utc::now();
            let parsed: Vec<&RawValue> = chunk
                .iter()
                .filter_map(|(_, l)| l.as_deref().ok())
                .collect();
            let mut validated = validate(
                &lookup,
                &provider,
                &parsed,
                now,
                config.ingest_max_age,
                config.ingest_max_future,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
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
            for ((number, line), outcome) in chunk.iter().zip(&outcomes) {
                if let Err(refused) = outcome {
                    let id = line.as_ref().ok().and_then(|raw| id_of(raw));
                    write_refusal(report, &name, *number, id.as_deref(), refused)?;
                }
            }
            let accepted = accepted_events(&provider, &outcomes, now);
            if !accepted.is_empty() {
                sink.publish(&accepted, &[])
                    .await
                    .map_err(|e| anyhow::anyhow!("publishing to usage.events: {e}"))?;
            }
            totals.lines += chunk.len() as u64;
            totals.accepted += accepted.len() as u64;
            totals.refused += (chunk.len() - accepted.len()) as u64;
            progress(&totals, read.load(Ordering::Relaxed));
        }
    }
    report.flush()?;
    Ok(totals)
}

fn write_refusal(
    report: &mut dyn Write,
    file: &str,
    line: u64,
    id: Option<&str>,
    refused: &EventRejection,
) -> std::io::Result<()> {
    let mut row = csv::Writer::from_writer(Vec::new());
    let line = line.to_string();
    row.write_record([
        tally_domain::spreadsheet::text_cell(file).as_ref(),
        line.as_str(),
        tally_domain::spreadsheet::text_cell(id.unwrap_or_default()).as_ref(),
        refused.code,
        tally_domain::spreadsheet::text_cell(&refused.message).as_ref(),
    ])?;
    let bytes = row.into_inner().map_err(|e| e.into_error())?;
    report.write_all(&bytes)
}

/// The files' sizes on disk, together.
pub fn total_bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
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
    fn the_format_is_told_by_the_file_name() {
        assert_eq!(
            format_of(Path::new("a/usage.ndjson.gz")).unwrap(),
            (Format::Ndjson, true)
        );
        assert_eq!(
            format_of(Path::new("usage.CSV")).unwrap(),
            (Format::Csv, false)
        );
        assert!(format_of(Path::new("usage.txt")).is_err());
    }
}
