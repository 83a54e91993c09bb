//! The verifier's stdout contract, parsed:
//! `SUCCESS [NAME] batch=UUID runs=N chunks=C duplicates_dropped=D` or
//! `FAILURE [NAME] batch=UUID reason=TEXT`.

use uuid::Uuid;

/// One parsed verdict line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictLine {
    pub success: bool,
    pub name: String,
    pub batch: Uuid,
    /// SUCCESS only.
    pub runs: Option<i64>,
    pub chunks: Option<i64>,
    pub duplicates_dropped: Option<i64>,
    /// FAILURE only.
    pub reason: Option<String>,
    pub line: String,
}

impl VerdictLine {
    /// Parses a line; `None` if it does not follow the contract.
    pub fn parse(line: &str) -> Option<VerdictLine> {
        let (success, rest) = if let Some(r) = line.strip_prefix("SUCCESS [") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("FAILURE [") {
            (false, r)
        } else {
            return None;
        };
        let (name, rest) = rest.split_once("] batch=")?;
        let (batch, rest) = rest.split_at(rest.len().min(36));
        let batch: Uuid = batch.parse().ok()?;
        let mut v = VerdictLine {
            success,
            name: name.to_string(),
            batch,
            runs: None,
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
        } else {
            v.reason = Some(rest.strip_prefix(" reason=")?.to_string());
        }
        Some(v)
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
        assert!(VerdictLine::parse("hello").is_none());
        assert!(VerdictLine::parse(&format!("SUCCESS [x] batch={id} runs=1")).is_none());
        assert!(
            VerdictLine::parse("SUCCESS [x] batch=nope runs=1 chunks=1 duplicates_dropped=0")
                .is_none()
        );
    }
}
