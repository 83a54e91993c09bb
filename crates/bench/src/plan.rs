//! [`Plan`]: the sizes and sections of one bench run, after `--quick`.

use std::collections::BTreeSet;

use crate::args::BenchArgs;
use crate::error::{Error, Result};

/// Every section, in the order they run.
pub const SECTIONS: [&str; 12] = [
    "limit",
    "e2e",
    "replicas",
    "scaling",
    "sum",
    "aggregator",
    "rebuild",
    "recovery",
    "purge",
    "cancel",
    "fairness",
    "rss",
];

/// The sizes of one bench run, after `--quick`.
#[derive(Clone, Debug)]
pub struct Plan {
    pub runs: i64,
    pub rss_runs: i64,
    pub chunk_size: i32,
    pub drain_results: i32,
    pub sections: BTreeSet<&'static str>,
}

impl Plan {
    /// Whether `section` runs.
    pub fn on(&self, section: &str) -> bool {
        self.sections.contains(section)
    }
}

pub fn plan(args: &BenchArgs) -> Result<Plan> {
    let div = if args.quick { 10 } else { 1 };
    let mut sections = BTreeSet::new();
    for s in &args.only {
        let known = SECTIONS.iter().find(|k| **k == s.as_str()).ok_or_else(|| {
            Error::Options(format!(
                "unknown section {s:?}; sections: {}",
                SECTIONS.join(", ")
            ))
        })?;
        sections.insert(*known);
    }
    if sections.is_empty() {
        sections.extend(SECTIONS);
    }
    let p = Plan {
        runs: args.runs / div,
        rss_runs: args.rss_runs / div,
        // A tenth of the chunk size too, so quick batches have as many chunks.
        chunk_size: (args.chunk_size / div as i32).max(1),
        drain_results: args.drain_results / div as i32,
        sections,
    };
    if p.runs <= 0 || p.rss_runs <= 0 || p.drain_results <= 0 || args.chunk_size <= 0 {
        return Err(Error::Options(
            "--runs, --rss-runs, --drain-results and --chunk-size must be positive (after --quick's division by 10)".into(),
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["bench"];
        argv.extend(extra);
        Cli::parse_from(argv).bench
    }

    #[test]
    fn quick_is_a_tenth_of_every_size() {
        let p = plan(&args(&["--quick"])).unwrap();
        assert_eq!(
            (p.runs, p.rss_runs, p.chunk_size, p.drain_results),
            (50_000, 200_000, 1_000, 10_000)
        );
        assert_eq!(p.sections.len(), SECTIONS.len());
        let p = plan(&args(&[])).unwrap();
        assert_eq!((p.runs, p.rss_runs), (500_000, 2_000_000));
    }

    #[test]
    fn only_selects_known_sections_and_rejects_others() {
        let p = plan(&args(&["--only", "limit,sum"])).unwrap();
        assert_eq!(p.sections, BTreeSet::from(["limit", "sum"]));
        assert!(plan(&args(&["--only", "nope"])).is_err());
        assert!(plan(&args(&["--runs", "5", "--quick"])).is_err());
    }
}
