//! The verifier's stdout contract, parsed:
//! `SUCCESS [NAME] batch=UUID runs=N chunks=C duplicates_dropped=D`,
//! `CANCELLED [NAME] batch=UUID runs_done=N of M` or
//! `FAILURE [NAME] batch=UUID reason=TEXT`.

use uuid::Uuid;

/// One parsed verdict line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictLine {
    /// A SUCCESS line.
    pub success: bool,
    /// A CANCELLED line (`success` is false): neither SUCCESS nor FAILURE.
    pub cancelled: bool,
    pub name: String,
    pub batch: Uuid,
    /// SUCCESS: the runs; CANCELLED: the batch's runs (the `of M`).
    pub runs: Option<i64>,
    /// CANCELLED only: the runs of the chunks completed before the cancel.
    pub runs_done: Option<i64>,
    pub chunks: Option<i64>,
    pub duplicates_dropped: Option<i64>,
    /// FAILURE only.
    pub reason: Option<String>,
    pub line: String,
}

impl VerdictLine {
    /// Parses a line; `None` if it does not follow the contract.
    pub fn parse(line: &str) -> Option<VerdictLine> {
        let (success, cancelled, rest) = if let Some(r) = line.strip_prefix("SUCCESS [") {
            (true, false, r)
        } else if let Some(r) = line.strip_prefix("CANCELLED [") {
            (false, true, r)
        } else if let Some(r) = line.strip_prefix("FAILURE [") {
            (false, false, r)
        } else {
            return None;
        };
        let (name, rest) = rest.split_once("] batch=")?;
        let (batch, rest) = rest.split_at(rest.len().min(36));
        let batch: Uuid = batch.parse().ok()?;
        let mut v = VerdictLine {
            success,
            cancelled,
            name: name.to_string(),
            batch,
            runs: None,
            runs_done: None,
            chunks: None,
            duplicates_dropped: None,
            reason: None,
            line: line.to_string(),
        };
        if success {
            for field in rest.split_whitespace() {
                let (k, val) = field.split_once('=')?;
                let val: i64 = val.parse().ok()?;
                match k {
                    "runs" => v.runs = Some(val),
                    "chunks" => v.chunks = Some(val),
                    "duplicates_dropped" => v.duplicates_dropped = Some(val),
                    _ => return None,
                }
            }
            if v.runs.is_none() || v.chunks.is_none() || v.duplicates_dropped.is_none() {
                return None;
            }
        } else if cancelled {
            let (done, runs) = rest.strip_prefix(" runs_done=")?.split_once(" of ")?;
            v.runs_done = Some(done.parse().ok()?);
            v.runs = Some(runs.parse().ok()?);
        } else {
            v.reason = Some(rest.strip_prefix(" reason=")?.to_string());
        }
        Some(v)
    }

    /// A FAILURE line.
    pub fn failed(&self) -> bool {
        !self.success && !self.cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_rejects_others() {
        let id = Uuid::new_v4();
        let s = VerdictLine::parse(&format!(
            "SUCCESS [a b] batch={id} runs=10 chunks=2 duplicates_dropped=3"
        ))
        .unwrap();
        assert!(s.success);
        assert_eq!(
            (
                s.name.as_str(),
                s.batch,
                s.runs,
                s.chunks,
                s.duplicates_dropped
            ),
            ("a b", id, Some(10), Some(2), Some(3))
        );
        let f = VerdictLine::parse(&format!(
            "FAILURE [x] batch={id} reason=chunk 3 failed: boom"
        ))
        .unwrap();
        assert!(!f.success);
        assert_eq!(f.reason.as_deref(), Some("chunk 3 failed: boom"));
        assert!(f.failed());
        let c = VerdictLine::parse(&format!("CANCELLED [c] batch={id} runs_done=2000 of 20000"))
            .unwrap();
        assert!(c.cancelled && !c.success && !c.failed());
        assert_eq!((c.runs_done, c.runs), (Some(2000), Some(20000)));
        assert!(
            VerdictLine::parse(&format!("CANCELLED [c] batch={id} runs_done=x of 1")).is_none()
        );
        assert!(VerdictLine::parse("hello").is_none());
        assert!(VerdictLine::parse(&format!("SUCCESS [x] batch={id} runs=1")).is_none());
        assert!(
            VerdictLine::parse("SUCCESS [x] batch=nope runs=1 chunks=1 duplicates_dropped=0")
                .is_none()
        );
    }
}
