//! The consuming services of a run, each as one or more processes in its
//! consumer group (`--rating-instances`, `--invoicing-instances`), and what
//! each instance did during the throughput run, read from its own
//! `/metrics`: rating's `tally_rating_events_total` (events counted, and
//! duplicates dropped), invoicing's `tally_statements_applied_total` and
//! `tally_invoicing_layouts_total` (drafts planned from the layout it
//! remembered, and drafts whose lines it read back).
//!
//! An instance has an admin address of its own and no other per-process
//! state: the group gives it its partitions, its client and member ids are
//! the broker's, and everything it keeps is in PostgreSQL.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tally_platform::Config;

use super::services::{spawn, Ports, ServiceProcess};

/// How an instance left during the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    /// SIGTERM: it finishes its batch, commits and leaves its group.
    Stopped,
    /// SIGKILL: a crash; its partitions move once the session times out.
    Killed,
}

impl Departure {
    pub(super) fn signal(self) -> &'static str {
        match self {
            Departure::Stopped => "SIGTERM",
            Departure::Killed => "SIGKILL",
        }
    }
}

/// What one rating or invoicing instance did during the throughput run.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceFigures {
    /// `rating`, or `rating-1`, `rating-2`, … when the run has (or churn
    /// makes) more than one; likewise for invoicing.
    pub name: String,
    /// `rating` or `invoicing`.
    pub service: String,
    /// Seconds after the run's first POST it was started (0: before the run).
    pub joined_s: f64,
    /// For an instance started during the run: seconds after the first
    /// POST its `/readyz` first answered 200 (its group had given it
    /// partitions); `None` if that did not happen before the run ended.
    pub assigned_s: Option<f64>,
    /// Seconds after the first POST it was sent `left_by`.
    pub left_s: Option<f64>,
    /// `SIGTERM` or `SIGKILL`.
    pub left_by: Option<String>,
    /// Rating: events it counted (new, billed by it); invoicing:
    /// statements it applied (draft invoices changed). For an instance
    /// that left, as its `/metrics` said just before the signal.
    pub processed: u64,
    /// Rating: events it dropped as already counted (redelivered after a
    /// partition moved to it).
    pub duplicates: u64,
    /// Invoicing: drafts it changed whose new lines it planned from the
    /// layout it remembered (`tally_invoicing_layouts_total{from="memory"}`).
    pub layouts_remembered: u64,
    /// Invoicing: drafts it changed whose lines it read back first
    /// (`{from="database"}`); the others it changed it inserted.
    pub layouts_read_back: u64,
    /// `processed` per second of its time in the run (from its start, or
    /// the first POST, to its signal, or the last event billed).
    pub per_s: f64,
    /// CPU time (user + system) it used in the run, s.
    pub cpu_seconds: f64,
}

/// A counter's value in a Prometheus text exposition: the sum of the
/// series named `name` that carry every one of `labels` (0 when there is
/// none: a counter shows once it was first incremented).
pub(super) fn counter(text: &str, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<u64> {
    let mut sum = 0u64;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(open) => {
                let close = line
                    .rfind('}')
                    .with_context(|| format!("no closing brace: {line}"))?;
                (
                    &line[..open],
                    Some((&line[open + 1..close], &line[close + 1..])),
                )
            }
            None => (line.split_whitespace().next().unwrap_or(""), None),
        };
        if series != name {
            continue;
        }
        let (found, value) = match rest {
            Some((inside, value)) => (parse_labels(inside)?, value),
            None => (BTreeMap::new(), &line[series.len()..]),
        };
        if !labels
            .iter()
            .all(|(k, v)| found.get(*k).map(String::as_str) == Some(*v))
        {
            continue;
        }
        let value = value.split_whitespace().next().unwrap_or("");
        let value: f64 = value
            .parse()
            .with_context(|| format!("not a number in {line}"))?;
        if !(value >= 0.0 && value.fract() == 0.0) {
            anyhow::bail!("not a count in {line}");
        }
        sum += value as u64;
    }
    Ok(sum)
}

/// `k="v",k2="v2"` (values with `\"`, `\\` and `\n` escaped).
fn parse_labels(inside: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = inside.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(labels);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            anyhow::bail!("label {key} without a quoted value in {{{inside}}}");
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => anyhow::bail!("unterminated label value in {{{inside}}}"),
                },
                Some(c) => value.push(c),
                None => anyhow::bail!("unterminated label value in {{{inside}}}"),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

/// An instance's name: the service's own when it is the only one the run
/// ever has, else numbered from 1.
pub(super) fn instance_name(service: &str, number: usize, many: bool) -> String {
    if many {
        format!("{service}-{number}")
    } else {
        service.to_owned()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    processed: u64,
    duplicates: u64,
    remembered: u64,
    read_back: u64,
}

struct Member {
    name: String,
    service: &'static str,
    process: ServiceProcess,
    admin: u16,
    joined: Instant,
    /// Started during the run (so its assignment is watched for).
    joined_in_run: bool,
    assigned: Option<Instant>,
    left: Option<(Instant, Departure)>,
    start: Counts,
    last: Counts,
    cpu_start: f64,
    cpu_last: Option<f64>,
    rss_last: Option<f64>,
}

/// The rating and invoicing instances of a run.
pub(super) struct Instances {
    config: Config,
    ports: Ports,
    http: reqwest::Client,
    members: Vec<Member>,
    /// Per service: numbered names, and how many were started so far.
    many: BTreeMap<&'static str, bool>,
    started: BTreeMap<&'static str, usize>,
}

pub(super) const RATING: &str = "rating";
pub(super) const INVOICING: &str = "invoicing";

impl Instances {
    /// Starts `rating` rating and `invoicing` invoicing processes; names
    /// are numbered for a service with more than one, or with `churn` (which
    /// starts more) when it churns.
    pub(super) fn start(
        config: &Config,
        collector: u16,
        api: u16,
        (rating, invoicing): (usize, usize),
        churn: (bool, bool),
    ) -> anyhow::Result<Instances> {
        let mut instances = Instances {
            config: config.clone(),
            ports: Ports {
                collector,
                api,
                admin: 0,
            },
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            members: Vec::new(),
            many: BTreeMap::from([
                (RATING, rating > 1 || churn.0),
                (INVOICING, invoicing > 1 || churn.1),
            ]),
            started: BTreeMap::new(),
        };
        for _ in 0..rating {
            instances.spawn(RATING, false)?;
        }
        for _ in 0..invoicing {
            instances.spawn(INVOICING, false)?;
        }
        Ok(instances)
    }

    fn spawn(&mut self, service: &'static str, in_run: bool) -> anyhow::Result<String> {
        let number = self.started.entry(service).or_default();
        *number += 1;
        let name = instance_name(service, *number, self.many[service]);
        let admin = crate::infra::free_port()?;
        let ports = Ports {
            admin,
            ..self.ports
        };
        let process = spawn(service, &name, &self.config, ports)?;
        self.members.push(Member {
            name: name.clone(),
            service,
            process,
            admin,
            joined: Instant::now(),
            joined_in_run: in_run,
            assigned: None,
            left: None,
            start: Counts::default(),
            last: Counts::default(),
            cpu_start: 0.0,
            cpu_last: None,
            rss_last: None,
        });
        Ok(name)
    }

    /// Starts one more instance of `service` during the run; its name.
    pub(super) fn join(&mut self, service: &'static str) -> anyhow::Result<String> {
        self.spawn(service, true)
    }

    /// Sends the oldest instance of `service` still running `how`, right
    /// after reading its counts; its name (none when none runs).
    pub(super) async fn leave(
        &mut self,
        service: &'static str,
        how: Departure,
    ) -> anyhow::Result<Option<String>> {
        let Some(i) = self
            .members
            .iter()
            .position(|m| m.service == service && m.left.is_none())
        else {
            return Ok(None);
        };
        self.scrape_one(i).await;
        let member = &mut self.members[i];
        match how {
            Departure::Stopped => member.process.terminate(),
            Departure::Killed => member.process.kill(),
        }
        member.left = Some((Instant::now(), how));
        Ok(Some(member.name.clone()))
    }

    /// Waits until every instance's group gave it partitions (its
    /// `/readyz` answers 200: database, broker and assignment), so the run
    /// starts with all of them at work, not in their first rebalance.
    pub(super) async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for m in &self.members {
            let url = format!("http://127.0.0.1:{}/readyz", m.admin);
            loop {
                if let Ok(r) = self.http.get(&url).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "{} was not ready (assigned by its group) within 60 s",
                        m.name
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Reads every running instance's counts, CPU time and peak memory (an
    /// instance that does not answer keeps what it said last).
    pub(super) async fn scrape(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].left.is_none() {
                self.scrape_one(i).await;
            }
        }
    }

    async fn scrape_one(&mut self, i: usize) {
        let m = &self.members[i];
        let url = format!("http://127.0.0.1:{}/metrics", m.admin);
        let text = match self.http.get(&url).send().await {
            Ok(r) => r.text().await.ok(),
            Err(_) => None,
        };
        let counts = text.and_then(|t| counts_of(m.service, &t).ok());
        let m = &mut self.members[i];
        if let Some(counts) = counts {
            m.last = counts;
        }
        m.cpu_last = m.process.cpu_seconds().or(m.cpu_last);
        m.rss_last = m.process.peak_rss_mib().or(m.rss_last);
    }

    /// The start of the throughput run: what each instance did before it
    /// is not the run's (call after [`Instances::scrape`]).
    pub(super) fn mark_start(&mut self) {
        for m in &mut self.members {
            m.start = m.last;
            m.cpu_start = m.cpu_last.unwrap_or(0.0);
        }
    }

    /// Events the rating instances counted in the run so far.
    pub(super) fn rated(&self) -> u64 {
        self.members
            .iter()
            .filter(|m| m.service == RATING)
            .map(|m| m.last.processed.saturating_sub(m.start.processed))
            .sum()
    }

    /// The instances started during the run whose group has now given
    /// them partitions (`/readyz` answers 200), each once.
    pub(super) async fn newly_assigned(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for m in &mut self.members {
            if !m.joined_in_run || m.assigned.is_some() || m.left.is_some() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/readyz", m.admin);
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    m.assigned = Some(Instant::now());
                    names.push(m.name.clone());
                }
            }
        }
        names
    }

    /// Each instance's figures for the run from `started` to `ended`.
    pub(super) fn figures(&self, started: Instant, ended: Instant) -> Vec<InstanceFigures> {
        let at = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
        self.members
            .iter()
            .map(|m| {
                let from = m.joined.max(started);
                let to = m.left.map_or(ended, |(t, _)| t.min(ended));
                let seconds = to.saturating_duration_since(from).as_secs_f64();
                let processed = m.last.processed.saturating_sub(m.start.processed);
                InstanceFigures {
                    name: m.name.clone(),
                    service: m.service.to_owned(),
                    joined_s: at(m.joined),
                    assigned_s: m.assigned.map(at),
                    left_s: m.left.map(|(t, _)| at(t)),
                    left_by: m.left.map(|(_, how)| how.signal().to_owned()),
                    processed,
                    duplicates: m.last.duplicates.saturating_sub(m.start.duplicates),
                    layouts_remembered: m.last.remembered.saturating_sub(m.start.remembered),
                    layouts_read_back: m.last.read_back.saturating_sub(m.start.read_back),
                    per_s: if seconds > 0.0 {
                        processed as f64 / seconds
                    } else {
                        0.0
                    },
                    cpu_seconds: (m.cpu_last.unwrap_or(m.cpu_start) - m.cpu_start).max(0.0),
                }
            })
            .collect()
    }

    /// Peak resident memory (VmHWM) of each instance, MiB: read now for
    /// those running, as last read for those that left.
    pub(super) fn peak_rss_mib(&mut self) -> Vec<(&'static str, String, f64)> {
        self.members
            .iter_mut()
            .filter_map(|m| {
                if m.left.is_none() {
                    m.rss_last = m.process.peak_rss_mib().or(m.rss_last);
                }
                Some((m.service, m.name.clone(), m.rss_last?))
            })
            .collect()
    }
}

fn counts_of(service: &str, text: &str) -> anyhow::Result<Counts> {
    Ok(if service == RATING {
        Counts {
            processed: counter(text, "tally_rating_events_total", &[("outcome", "counted")])?,
            duplicates: counter(
                text,
                "tally_rating_events_total",
                &[("outcome", "duplicate")],
            )?,
            ..Counts::default()
        }
    } else {
        let layouts = |from| counter(text, "tally_invoicing_layouts_total", &[("from", from)]);
        Counts {
            processed: counter(text, "tally_statements_applied_total", &[])?,
            remembered: layouts("memory")?,
            read_back: layouts("database")?,
            ..Counts::default()
        }
    })
}

/// The per-instance lines of the text report, and the rating events no
/// instance's count covers (counted after an instance's last `/metrics`
/// read before it left).
pub(super) fn describe(figures: &[InstanceFigures], accepted: u64) -> (Vec<String>, i64) {
    let mut lines = Vec::new();
    for f in figures {
        let what = if f.service == RATING {
            format!(
                "{} events counted ({} duplicates dropped)",
                f.processed, f.duplicates
            )
        } else {
            format!(
                "{} statements applied ({} drafts planned from memory, {} read back)",
                f.processed, f.layouts_remembered, f.layouts_read_back
            )
        };
        let mut line = format!(
            "  {}: {what} = {:.0}/s, CPU {:.1} s",
            f.name, f.per_s, f.cpu_seconds
        );
        if f.joined_s > 0.0 {
            line += &format!("; started at {:.1} s", f.joined_s);
            match f.assigned_s {
                Some(s) => line += &format!(", assigned at {s:.1} s"),
                None => line += ", not assigned before the run ended",
            }
        }
        if let (Some(s), Some(by)) = (f.left_s, &f.left_by) {
            line += &format!("; {by} at {s:.1} s");
        }
        lines.push(line);
    }
    let rated: u64 = figures
        .iter()
        .filter(|f| f.service == RATING)
        .map(|f| f.processed)
        .sum();
    let unattributed =
        i64::try_from(accepted).unwrap_or(i64::MAX) - i64::try_from(rated).unwrap_or(i64::MAX);
    (lines, unattributed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `metrics-exporter-prometheus` renders a rating process's counters.
    const RATING_TEXT: &str = r#"# TYPE tally_rating_events_total counter
tally_rating_events_total{outcome="counted"} 12034
tally_rating_events_total{outcome="duplicate"} 17
tally_rating_events_total{outcome="dead_lettered"} 0

# TYPE tally_rating_batch_seconds summary
tally_rating_batch_seconds{quantile="0.5"} 0.031
tally_rating_batch_seconds_sum 4.2
tally_rating_batch_seconds_count 97
# TYPE tally_statements_published_total counter
tally_statements_published_total 5120
"#;

    #[test]
    fn a_counter_is_read_by_name_and_labels() {
        let c = |name, labels: &[(&str, &str)]| counter(RATING_TEXT, name, labels).unwrap();
        assert_eq!(
            c("tally_rating_events_total", &[("outcome", "counted")]),
            12034
        );
        assert_eq!(
            c("tally_rating_events_total", &[("outcome", "duplicate")]),
            17
        );
        // Without labels: every series of the name.
        assert_eq!(c("tally_rating_events_total", &[]), 12051);
        assert_eq!(c("tally_statements_published_total", &[]), 5120);
        // A name that only starts another's is not it.
        assert_eq!(c("tally_rating_batch_seconds_count", &[]), 97);
        // Not incremented yet: absent, so 0.
        assert_eq!(c("tally_statements_applied_total", &[]), 0);
        assert_eq!(c("tally_rating_events_total", &[("outcome", "refused")]), 0);
    }

    #[test]
    fn each_service_counts_what_it_did() {
        let text = r#"# TYPE tally_statements_applied_total counter
tally_statements_applied_total 55953
# TYPE tally_invoicing_layouts_total counter
tally_invoicing_layouts_total{from="memory"} 49349
tally_invoicing_layouts_total{from="database"} 12
"#;
        let c = counts_of("invoicing", text).unwrap();
        assert_eq!(
            (c.processed, c.remembered, c.read_back, c.duplicates),
            (55953, 49349, 12, 0)
        );
        let c = counts_of(RATING, RATING_TEXT).unwrap();
        assert_eq!(
            (c.processed, c.duplicates, c.remembered, c.read_back),
            (12034, 17, 0, 0)
        );
    }

    #[test]
    fn label_values_may_hold_commas_quotes_and_braces() {
        let text = "m{a=\"x,y\",b=\"say \\\"}\\\"\"} 3\nm{a=\"z\"} 4 1712000000000\n";
        assert_eq!(counter(text, "m", &[("a", "x,y")]).unwrap(), 3);
        assert_eq!(counter(text, "m", &[("b", "say \"}\"")]).unwrap(), 3);
        // A timestamp after the value is not the value.
        assert_eq!(counter(text, "m", &[("a", "z")]).unwrap(), 4);
    }

    #[test]
    fn a_value_that_is_not_a_count_is_an_error() {
        assert!(counter("m 1.5\n", "m", &[]).is_err());
        assert!(counter("m -1\n", "m", &[]).is_err());
        assert!(counter("m{a=\"1\" 2\n", "m", &[]).is_err());
        assert_eq!(counter("m 2e3\n", "m", &[]).unwrap(), 2000);
    }

    #[test]
    fn instances_are_numbered_only_when_the_run_has_several() {
        assert_eq!(instance_name("rating", 1, false), "rating");
        assert_eq!(instance_name("rating", 3, true), "rating-3");
    }

    #[test]
    fn the_report_lines_say_who_left_and_joined_and_what_no_one_counted() {
        let f = |name: &str, service: &str, processed| InstanceFigures {
            name: name.into(),
            service: service.into(),
            processed,
            per_s: processed as f64 / 4.0,
            ..InstanceFigures::default()
        };
        let figures = vec![
            InstanceFigures {
                left_s: Some(1.3),
                left_by: Some("SIGTERM".into()),
                duplicates: 0,
                ..f("rating-1", "rating", 3000)
            },
            InstanceFigures {
                joined_s: 4.0,
                assigned_s: Some(7.5),
                duplicates: 40,
                ..f("rating-3", "rating", 9000)
            },
            f("rating-2", "rating", 7900),
            InstanceFigures {
                layouts_remembered: 700,
                layouts_read_back: 32,
                ..f("invoicing", "invoicing", 832)
            },
        ];
        let (lines, unattributed) = describe(&figures, 20_000);
        assert_eq!(
            lines,
            [
                "  rating-1: 3000 events counted (0 duplicates dropped) = 750/s, CPU 0.0 s; SIGTERM at 1.3 s",
                "  rating-3: 9000 events counted (40 duplicates dropped) = 2250/s, CPU 0.0 s; started at 4.0 s, assigned at 7.5 s",
                "  rating-2: 7900 events counted (0 duplicates dropped) = 1975/s, CPU 0.0 s",
                "  invoicing: 832 statements applied (700 drafts planned from memory, 32 read back) = 208/s, CPU 0.0 s",
            ]
        );
        assert_eq!(unattributed, 100);
    }
}
