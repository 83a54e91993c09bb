//! The HTML pages, one module per page; each loads its data through
//! `crate::data` and renders it with `crate::views`.

pub mod batch;
pub mod batches;
pub mod cancel;
pub mod compare;
pub mod events;
pub mod login;
pub mod new_batch;
pub mod queue;
