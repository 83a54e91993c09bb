//! Reads a stage's cumulative phase timings and event counters from its
//! Prometheus endpoint (`METRICS_ADDR`), just before the bench stops it.
//!
//! The 10-second log lines only carry deltas and the last partial interval
//! is never logged, so the totals come from `/metrics` instead:
//! `batchline_phase_seconds_{sum,count}{stage,phase}` and
//! `batchline_events_total{stage,event}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Total time spent in one phase over a stage's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PhaseTotal {
    pub count: u64,
    pub total_s: f64,
}

/// What one scrape found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageMetrics {
    pub phases: BTreeMap<String, PhaseTotal>,
    pub events: BTreeMap<String, u64>,
}

impl StageMetrics {
    /// Adds another process's totals (several executors of one scenario).
    pub fn add(&mut self, other: &StageMetrics) {
        for (name, p) in &other.phases {
            let e = self.phases.entry(name.clone()).or_default();
            e.count += p.count;
            e.total_s += p.total_s;
        }
        for (name, n) in &other.events {
            *self.events.entry(name.clone()).or_default() += n;
        }
    }
}

/// Fetches and parses `http://addr/metrics`.
pub async fn scrape(addr: SocketAddr) -> Result<StageMetrics> {
    let body = tokio::time::timeout(Duration::from_secs(10), fetch(addr))
        .await
        .map_err(|_| Error::Metrics {
            addr,
            what: "no answer within 10 s".into(),
            source: None,
        })??;
    Ok(parse(&body))
}

async fn fetch(addr: SocketAddr) -> Result<String> {
    let failed = |what: &str| {
        let what = what.to_owned();
        move |source| Error::Metrics {
            addr,
            what,
            source: Some(source),
        }
    };
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(failed("cannot connect"))?;
    // HTTP/1.0: the server closes after the body and never chunks it.
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(failed("cannot send the request"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(failed("cannot read the answer"))?;
    let text = String::from_utf8_lossy(&raw);
    let bad = |what: String| Error::Metrics {
        addr,
        what,
        source: None,
    };
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("answered without an HTTP header".into()))?;
    if !(head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200")) {
        return Err(bad(format!(
            "answered {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok(body.to_owned())
}

/// Parses the Prometheus text format, keeping only batchline's series.
pub fn parse(text: &str) -> StageMetrics {
    let mut m = StageMetrics::default();
    for line in text.lines() {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let label = |key: &str| {
            labels
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        match name {
            "batchline_phase_seconds_sum" => {
                if let Some(phase) = label("phase") {
                    m.phases.entry(phase).or_default().total_s += value;
                }
            }
            "batchline_phase_seconds_count" => {
                if let Some(phase) = label("phase") {
                    m.phases.entry(phase).or_default().count += value as u64;
                }
            }
            "batchline_events_total" => {
                if let Some(event) = label("event") {
                    *m.events.entry(event).or_default() += value as u64;
                }
            }
            _ => {}
        }
    }
    m
}

/// A sample's metric name, labels and value.
type Sample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// One sample line: `name{k="v",…} value [timestamp]`.
fn sample(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (series, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            (&line[..=close], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, body)) => {
            let body = body.strip_suffix('}')?;
            let labels = body
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim(), v.trim().trim_matches('"')))
                })
                .collect();
            (name, labels)
        }
        None => (series, Vec::new()),
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_phase_sums_counts_and_events() {
        let text = r#"
# TYPE batchline_events_total counter
batchline_events_total{stage="executor",event="runs"} 500000
batchline_events_total{stage="executor",event="chunks"} 50
# TYPE batchline_phase_seconds summary
batchline_phase_seconds{stage="executor",phase="claim",quantile="0.5"} 0.002
batchline_phase_seconds_sum{stage="executor",phase="claim"} 0.125
batchline_phase_seconds_count{stage="executor",phase="claim"} 50
batchline_phase_seconds_sum{stage="executor",phase="simulate"} 12.5
batchline_phase_seconds_count{stage="executor",phase="simulate"} 50
other_metric 3
"#;
        let m = parse(text);
        assert_eq!(m.events["runs"], 500_000);
        assert_eq!(m.events["chunks"], 50);
        assert_eq!(
            m.phases["claim"],
            PhaseTotal {
                count: 50,
                total_s: 0.125
            }
        );
        assert_eq!(m.phases["simulate"].total_s, 12.5);
        assert_eq!(m.phases.len(), 2);
    }

    #[test]
    fn add_sums_two_processes() {
        let a = parse(
            "batchline_phase_seconds_sum{stage=\"e\",phase=\"p\"} 1\nbatchline_phase_seconds_count{stage=\"e\",phase=\"p\"} 2\nbatchline_events_total{stage=\"e\",event=\"runs\"} 5",
        );
        let mut total = a.clone();
        total.add(&a);
        assert_eq!(total.phases["p"].count, 4);
        assert_eq!(total.phases["p"].total_s, 2.0);
        assert_eq!(total.events["runs"], 10);
    }

    #[test]
    fn ignores_comments_and_garbage() {
        let m = parse("# HELP x\n\nnot a sample\nbatchline_events_total{event=\"a\"} notanumber\n");
        assert!(m.phases.is_empty() && m.events.is_empty());
    }
}
