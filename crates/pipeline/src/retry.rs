//! Retrying infrastructure operations (broker or database briefly away)
//! with capped exponential backoff, until they succeed, fail for good, or
//! the stage shuts down.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Runs `op` until it succeeds or fails with an error that cannot be
/// retried. Returns [`Error::Shutdown`] if `shutdown` fires while waiting.
pub async fn retrying<T, F, Fut>(what: &str, shutdown: &CancellationToken, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let attempt = op
        .retry(backoff)
        .when(|e: &Error| e.can_be_retried())
        .notify(|e, wait| tracing::warn!(error = %e, ?wait, "{what} failed; retrying"));
    tokio::select! {
        out = attempt => out,
        _ = shutdown.cancelled() => Err(Error::Shutdown),
    }
}
