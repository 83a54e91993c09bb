//! Reading request bodies for the API: JSON only (which is also what keeps
//! cross-site forms out, since they cannot send it), within a size limit,
//! and parse errors that say where (1-based line and column).

use axum::body::Body;
use axum::http::{HeaderMap, header};

use crate::error::Error;

/// A JSON parse error: serde_json's message without its " at line L
/// column C" tail, and the line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonSpot {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// Parses JSON, or says where it went wrong.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonSpot> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        let message = match text.rfind(" at line ") {
            Some(at) => text[..at].to_string(),
            None => text,
        };
        JsonSpot {
            message,
            line: e.line(),
            column: e.column(),
        }
    })
}

impl From<JsonSpot> for Error {
    fn from(s: JsonSpot) -> Self {
        Error::Json {
            message: s.message,
            line: s.line,
            column: s.column,
        }
    }
}

/// The body of a JSON request, at most `limit` bytes.
pub async fn json_bytes(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Error> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Error::UnsupportedMediaType(
            "send the body as JSON with Content-Type: application/json".into(),
        ));
    }
    let too_large = || Error::TooLarge(format!("the body is larger than the {limit}-byte limit"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_say_where() {
        let err = parse::<serde_json::Value>(b"{\n \"a\": [1,\n 2,,\n]}").unwrap_err();
        assert_eq!((err.line, err.column), (3, 4), "{err:?}");
        assert!(!err.message.contains(" at line "), "{err:?}");
    }
}
