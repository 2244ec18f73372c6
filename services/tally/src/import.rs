//! `tally import`: usage a provider missed sending, from files. Each line
//! passes exactly the collector's rules (`tally_collector::ingest::validate`:
//! size, schema, time window, SKU ownership, account, billability); accepted
//! events go to `usage.events` like the collector's, a chunk at a time, each
//! chunk acknowledged by the brokers before the next is read. Refused lines
//! are written to a report with their line number, code and message. A
//! rerun is safe: rating bills each (provider, event id) once.
//!
//! Formats, told by the file name (`.ndjson`, `.jsonl`, `.csv`, each
//! optionally `.gz`), and the reading and checking of lines are
//! [`tally_collector::import`]'s, which `POST /v1/imports` shares.

use anyhow::Context as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tally_collector::import::{lines, Format, Importer, Line, Refusal};
use tally_collector::lookup::Lookup;
use tally_collector::KafkaSink;
use tally_domain::ProviderId;
use tally_platform::Config;

pub use tally_collector::import::CHUNK;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub lines: u64,
    pub accepted: u64,
    pub refused: u64,
}

fn format_of(path: &Path) -> anyhow::Result<(Format, bool)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    Format::of_file_name(name).with_context(|| {
        format!(
            "{}: name the file .ndjson, .jsonl or .csv (optionally .gz)",
            path.display()
        )
    })
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

fn open(path: &Path, gzip: bool, read: Arc<AtomicU64>) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let file = Counted { file, read };
    let reader: Box<dyn Read + Send> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 20, reader)))
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
    let importer = Importer {
        lookup: &lookup,
        sink: &sink,
        provider: &provider,
        max_age: config.ingest_max_age,
        max_future: config.ingest_max_future,
    };
    let mut totals = ImportReport::default();
    let read = Arc::new(AtomicU64::new(0));
    writeln!(report, "file,line,id,code,message")?;
    for file in files {
        let name = file.display().to_string();
        let (format, gzip) = format_of(file)?;
        let mut input = lines(open(file, gzip, read.clone())?, format, &provider)
            .with_context(|| format!("reading {name}"))?;
        loop {
            let chunk: Vec<Line> = input
                .by_ref()
                .take(CHUNK)
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("reading {name}"))?;
            if chunk.is_empty() {
                break;
            }
            let outcome = importer
                .chunk(&chunk)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            for refused in &outcome.refused {
                write_refusal(report, &name, refused)?;
            }
            totals.lines += chunk.len() as u64;
            totals.accepted += outcome.accepted;
            totals.refused += outcome.refused.len() as u64;
            progress(&totals, read.load(Ordering::Relaxed));
        }
    }
    report.flush()?;
    Ok(totals)
}

fn write_refusal(report: &mut dyn Write, file: &str, refused: &Refusal) -> std::io::Result<()> {
    let mut row = csv::Writer::from_writer(Vec::new());
    let line = refused.line.to_string();
    row.write_record([
        tally_domain::spreadsheet::text_cell(file).as_ref(),
        line.as_str(),
        tally_domain::spreadsheet::text_cell(refused.id.as_deref().unwrap_or_default()).as_ref(),
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
    fn the_format_is_told_by_the_file_name() {
        assert_eq!(
            format_of(Path::new("a/usage.ndjson.gz")).unwrap(),
            (Format::Ndjson, true)
        );
        assert!(format_of(Path::new("usage.txt")).is_err());
    }
}
