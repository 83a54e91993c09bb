//! Message contracts between the stages: versioned JSON, strict decoding.
//!
//! Every message carries `"v"`. Decoding checks the version before the
//! shape, so an unknown version is reported as such (and dead-lettered)
//! rather than as a parse error. Result msg_ids are derived from (batch,
//! chunk) only, so a re-executed or re-published chunk result carries the
//! same id and the aggregator recognises it.

use broker::{Message, Queue};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use uuid::Uuid;
use workload::Summary;

use crate::{Error, Result};

/// The contract version this build speaks.
pub const VERSION: u32 = 1;

/// The msg_id prefix of a [`nudge`].
const NUDGE_PREFIX: &str = "nudge:";

/// Namespace for deterministic msg_ids (UUID v5).
const MSG_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_3a52_9c7e_4d0b_8a21_5f3c_e0d4_b917);

/// "Execute this chunk." Everything else about the batch is in the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkMsg {
    pub v: u32,
    pub batch_id: Uuid,
    pub chunk: i32,
}

impl WorkMsg {
    pub fn new(batch_id: Uuid, chunk: i32) -> Self {
        Self {
            v: VERSION,
            batch_id,
            chunk,
        }
    }

    pub fn msg_id(&self) -> String {
        format!("work:{}:{}", self.batch_id, self.chunk)
    }
}

/// One chunk's result, for the aggregator. Self-describing (name, chunk and
/// run totals) so the aggregator needs the store only to check the batch exists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultMsg {
    pub v: u32,
    pub batch_id: Uuid,
    pub name: String,
    pub chunk: i32,
    pub chunks: i32,
    pub runs_total: i64,
    /// Runs in this chunk.
    pub runs: i64,
    pub summary: Summary,
}

impl ResultMsg {
    pub fn msg_id(&self) -> String {
        result_msg_id(self.batch_id, self.chunk)
    }

    /// This result's message for the aggregator: to its batch's partition
    /// of `partitions`.
    pub fn to_message(&self, partitions: u16) -> Result<Message> {
        message(
            results_queue(self.batch_id, partitions),
            self.msg_id(),
            self,
        )
    }

    /// The message's JSON, as published and as stored with the chunk.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|source| Error::Encode {
            what: "chunk result",
            source,
        })
    }
}

/// Where a batch's chunk results go: its partition's results queue (the one
/// place every publisher of results asks).
pub fn results_queue(batch_id: Uuid, partitions: u16) -> Queue {
    Queue::Results(store::partition::of(batch_id, partitions))
}

/// A chunk's result as stored with its chunk, to publish again (after a
/// crash before the first publish, or to refill a stalled aggregator).
pub fn stored_result(batch_id: Uuid, chunk: i32, json: String, partitions: u16) -> Message {
    Message::new(
        results_queue(batch_id, partitions),
        result_msg_id(batch_id, chunk),
        json.into_bytes(),
    )
}

/// A nudge to a partition's results queue: it carries no work, and makes
/// the queue's active consumer (which RabbitMQ chose, and does not
/// announce) take the partition now rather than at its next result. Sent
/// by a replica that let the partition go, and for partitions without a
/// live owner.
pub fn nudge(partition: u16, from: &str) -> Result<Message> {
    #[derive(Serialize)]
    struct Nudge<'a> {
        v: u32,
        nudge: &'a str,
    }
    let body = Nudge {
        v: VERSION,
        nudge: from,
    };
    let id = format!("{NUDGE_PREFIX}{}", Uuid::new_v4());
    message(Queue::Results(partition), id, &body)
}

/// Whether a results-queue delivery is a [`nudge`] (by its msg_id).
pub fn is_nudge(msg_id: &str) -> bool {
    msg_id.starts_with(NUDGE_PREFIX)
}

/// The deterministic msg_id of a chunk's result.
pub fn result_msg_id(batch_id: Uuid, chunk: i32) -> String {
    let mut name = [0u8; 20];
    name[..16].copy_from_slice(batch_id.as_bytes());
    name[16..].copy_from_slice(&chunk.to_be_bytes());
    Uuid::new_v5(&MSG_ID_NAMESPACE, &name).to_string()
}

/// For the verifier: a batch to check, or a batch that failed terminally.
/// The verifier reads everything else (the aggregate, its duplicate count)
/// from the store, where the aggregator saved it first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VerifyMsg {
    Aggregated {
        v: u32,
        batch_id: Uuid,
        /// Sent by earlier builds, and ignored: still accepted so that
        /// such a message in flight during an upgrade is not dead-lettered.
        #[serde(default, rename = "duplicates_dropped", skip_serializing)]
        legacy_duplicates_dropped: serde::de::IgnoredAny,
    },
    Failed {
        v: u32,
        batch_id: Uuid,
        reason: String,
    },
}

impl VerifyMsg {
    pub fn aggregated(batch_id: Uuid) -> Self {
        VerifyMsg::Aggregated {
            v: VERSION,
            batch_id,
            legacy_duplicates_dropped: serde::de::IgnoredAny,
        }
    }

    pub fn failed(batch_id: Uuid, reason: impl Into<String>) -> Self {
        VerifyMsg::Failed {
            v: VERSION,
            batch_id,
            reason: reason.into(),
        }
    }

    pub fn batch_id(&self) -> Uuid {
        match self {
            VerifyMsg::Aggregated { batch_id, .. } | VerifyMsg::Failed { batch_id, .. } => {
                *batch_id
            }
        }
    }

    pub fn msg_id(&self) -> String {
        match self {
            VerifyMsg::Aggregated { batch_id, .. } => format!("verify:{batch_id}"),
            VerifyMsg::Failed { batch_id, .. } => format!("verify-failed:{batch_id}"),
        }
    }
}

/// Why a message could not be decoded; becomes the dead-letter reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no version field \"v\"")]
    NoVersion,
    #[error("unknown message version {0} (this build speaks {VERSION})")]
    UnknownVersion(u64),
    #[error("invalid message: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
struct Envelope {
    v: Option<serde_json::Value>,
}

/// Decodes a message of type `T`, checking the version first.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    let envelope: Envelope =
        serde_json::from_slice(payload).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    match envelope.v {
        None => return Err(DecodeError::NoVersion),
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(VERSION)) => {}
        Some(serde_json::Value::Number(n)) => {
            return Err(DecodeError::UnknownVersion(n.as_u64().unwrap_or(u64::MAX)));
        }
        Some(other) => {
            return Err(DecodeError::Invalid(format!(
                "version is not a number: {other}"
            )));
        }
    }
    serde_json::from_slice(payload).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// Encodes a message.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(msg).map_err(|source| Error::Encode {
        what: std::any::type_name::<T>(),
        source,
    })
}

/// A message to publish to `queue`: `msg` encoded, under `msg_id`.
pub fn message<T: Serialize>(queue: Queue, msg_id: String, msg: &T) -> Result<Message> {
    Ok(Message::new(queue, msg_id, encode(msg)?))
}

impl WorkMsg {
    /// This chunk's work message, for `queue` (work, or the delayed retry).
    pub fn to_message(&self, queue: Queue) -> Result<Message> {
        message(queue, self.msg_id(), self)
    }
}

/// The work messages of these chunks (submit, and the sweeper's re-publish).
pub fn work_messages(chunks: &[store::ChunkRef]) -> Result<Vec<Message>> {
    chunks
        .iter()
        .map(|c| WorkMsg::new(c.batch_id, c.chunk).to_message(Queue::Work))
        .collect()
}

impl VerifyMsg {
    /// This verdict request's message for the verifier.
    pub fn to_message(&self) -> Result<Message> {
        message(Queue::Verify, self.msg_id(), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_roundtrip() {
        let m = WorkMsg::new(Uuid::new_v4(), 3);
        assert_eq!(decode::<WorkMsg>(&encode(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn rejects_garbage_wrong_shape_and_unknown_version() {
        assert!(matches!(
            decode::<WorkMsg>(b"\xff\x00garbage"),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(
            decode::<WorkMsg>(br#"{"hello":1}"#),
            Err(DecodeError::NoVersion)
        );
        assert!(matches!(
            decode::<WorkMsg>(br#"{"v":1,"hello":1}"#),
            Err(DecodeError::Invalid(_))
        ));
        let id = Uuid::new_v4();
        let future = format!(r#"{{"v":99,"batch_id":"{id}","chunk":0}}"#);
        assert_eq!(
            decode::<WorkMsg>(future.as_bytes()),
            Err(DecodeError::UnknownVersion(99))
        );
    }

    #[test]
    fn result_msg_ids_are_deterministic_per_batch_and_chunk() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        assert_eq!(result_msg_id(a, 1), result_msg_id(a, 1));
        assert_ne!(result_msg_id(a, 1), result_msg_id(a, 2));
        assert_ne!(result_msg_id(a, 1), result_msg_id(b, 1));
    }

    #[test]
    fn verify_roundtrip() {
        let m = VerifyMsg::failed(Uuid::new_v4(), "chunk 3 failed");
        assert_eq!(decode::<VerifyMsg>(&encode(&m).unwrap()).unwrap(), m);
        let m = VerifyMsg::aggregated(Uuid::new_v4());
        let bytes = encode(&m).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("duplicates"));
        assert_eq!(decode::<VerifyMsg>(&bytes).unwrap(), m);
    }

    #[test]
    fn an_aggregated_message_of_an_earlier_build_still_decodes() {
        let id = Uuid::new_v4();
        let old =
            format!(r#"{{"kind":"aggregated","v":1,"batch_id":"{id}","duplicates_dropped":4}}"#);
        assert_eq!(
            decode::<VerifyMsg>(old.as_bytes()).unwrap(),
            VerifyMsg::aggregated(id)
        );
    }
}
