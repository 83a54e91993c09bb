//! Keys and msg_ids: what is allowed, and which file names a key maps to.
//! Validation here is what keeps a key from naming a path outside the
//! state directory.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Longest key accepted (a UUID is 36).
pub const MAX_KEY_LEN: usize = 128;
/// Longest msg_id accepted.
pub const MAX_MSG_ID_LEN: usize = 256;

/// Suffix of a key's append log.
pub(crate) const DATA_SUFFIX: &str = ".csv";
/// Suffix of a key's quarantine file (lines moved out of the log).
pub(crate) const CORRUPT_SUFFIX: &str = ".csv.corrupt";
/// Suffix of a log being rewritten; a leftover one is deleted on open.
pub(crate) const TMP_SUFFIX: &str = ".csv.tmp";

/// Checks that `key` is 1..=[`MAX_KEY_LEN`] characters of `[A-Za-z0-9_-]`.
pub fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 128 bytes"
    } else if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        "only A-Z a-z 0-9 _ - are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey {
        key: key.to_owned(),
        reason,
    })
}

/// Checks that `msg_id` is 1..=[`MAX_MSG_ID_LEN`] bytes with no line break.
pub(crate) fn validate_msg_id(msg_id: &str) -> Result<()> {
    let reason = if msg_id.is_empty() {
        "empty"
    } else if msg_id.len() > MAX_MSG_ID_LEN {
        "longer than 256 bytes"
    } else if msg_id.bytes().any(|b| b == b'\n' || b == b'\r') {
        "contains a line break"
    } else {
        return Ok(());
    };
    Err(Error::InvalidMsgId {
        msg_id: msg_id.to_owned(),
        reason,
    })
}

pub(crate) fn data_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}{DATA_SUFFIX}"))
}

pub(crate) fn corrupt_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}{CORRUPT_SUFFIX}"))
}

pub(crate) fn tmp_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}{TMP_SUFFIX}"))
}

/// The key of a file name ending in `suffix`, if the rest is a valid key.
pub(crate) fn key_of<'a>(file_name: &'a str, suffix: &str) -> Option<&'a str> {
    let key = file_name.strip_suffix(suffix)?;
    validate_key(key).ok().map(|()| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_could_escape_the_directory_are_refused() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "/abs", "a.b", "a b", "é", "a\0",
        ] {
            assert!(
                matches!(validate_key(bad), Err(Error::InvalidKey { .. })),
                "{bad:?} accepted"
            );
        }
        assert!(validate_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn ordinary_keys_are_accepted() {
        for good in [
            "a",
            "batch_1",
            "0b6f3a1e-8c4d-4f1a-9d7e-2b5c6a7d8e9f",
            &"k".repeat(MAX_KEY_LEN),
        ] {
            validate_key(good).unwrap();
        }
    }

    #[test]
    fn msg_ids_must_fit_on_one_line() {
        for bad in ["", "a\nb", "a\rb"] {
            assert!(validate_msg_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_msg_id(&"m".repeat(MAX_MSG_ID_LEN + 1)).is_err());
        validate_msg_id("chunk-7:attempt,2 \"quoted\"").unwrap();
    }

    #[test]
    fn file_names_map_back_to_keys() {
        assert_eq!(key_of("b-1.csv", DATA_SUFFIX), Some("b-1"));
        assert_eq!(key_of("b-1.csv.corrupt", DATA_SUFFIX), None);
        assert_eq!(key_of("b-1.csv.corrupt", CORRUPT_SUFFIX), Some("b-1"));
        assert_eq!(key_of("a.b.csv", DATA_SUFFIX), None);
        assert_eq!(key_of(".csv", DATA_SUFFIX), None);
    }
}
