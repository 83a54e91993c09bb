//! The user's side of the contract: what a key's state is, how one row
//! folds into it, and when it is ready to be finalized.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The state kept per key. The manager creates it with `Default`, folds
/// every applied row into it with [`apply`](KeyedState::apply) (both live
/// and when rebuilding from disk, in file order) and asks
/// [`is_ready`](KeyedState::is_ready) to find keys to finalize.
pub trait KeyedState: Default {
    /// One stored row. Serialized by the `csv` crate as the columns after
    /// the msg_id, so it must be flat: scalars, strings, options, or
    /// `#[serde(flatten)]`-free structs of those. A string field must not
    /// contain a line break.
    type Row: Serialize + DeserializeOwned;

    /// Folds one row in. Must not fail: validate a row before `process`.
    /// Called at most once per (key, msg_id).
    fn apply(&mut self, row: &Self::Row);

    /// True when the key has everything it waits for.
    fn is_ready(&self) -> bool;
}
