//! Retrying infrastructure operations (broker or database briefly away)
//! with capped exponential backoff — one policy for every retry: a step
//! retried until it succeeds, fails for good, or the stage stops
//! ([`retrying`]), and a process's first connection to a service, retried
//! until a limit ([`first_connection`]), so that a process started before
//! RabbitMQ or Postgres accepts connections waits for them.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// The delays between attempts: 100 ms doubling to 5 s, jittered so that a
/// fleet started together does not retry in lockstep.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
}

/// Runs `op` until it succeeds or fails with an error that cannot be
/// retried. Returns [`Error::Shutdown`] if `shutdown` fires while waiting.
pub async fn retrying<T, F, Fut>(what: &str, shutdown: &CancellationToken, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let attempt = op
        .retry(backoff())
        .when(|e: &Error| e.can_be_retried())
        .notify(|e, wait| tracing::warn!(error = %e, ?wait, "{what} failed; retrying"));
    tokio::select! {
        out = attempt => out,
        _ = shutdown.cancelled() => Err(Error::Shutdown),
    }
}

/// Runs `connect` until it succeeds, fails with an error a retry cannot
/// fix (bad credentials, a bad URL), or `patience` has passed since the
/// first attempt; then returns the last error. Each wait is one log line
/// naming the service, the attempt, the next delay and the cause (whose
/// text names the address, never a password). A `patience` of zero tries
/// once.
pub async fn first_connection<T, F, Fut>(service: &str, patience: Duration, connect: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = Instant::now();
    let mut attempt = 0u32;
    let limit = match patience.as_secs() {
        s if s >= u64::from(u32::MAX) => "never giving up".to_owned(),
        s => format!("giving up after {s}s"),
    };
    connect
        .retry(backoff())
        .when(|e: &Error| e.can_be_retried() && !refused_by_tls(e) && start.elapsed() < patience)
        .notify(|e, wait| {
            attempt += 1;
            tracing::warn!(
                "waiting for {service}: attempt {attempt} failed, next in {:.1}s, {limit}: {}",
                wait.as_secs_f64(),
                one_line(e)
            );
        })
        .await
}

/// A TLS handshake the peer or this process refused over a certificate
/// (a wrong CA, name or date, a client certificate missing): the store
/// and the broker report those as connection errors, retryable in a
/// running process (a rotation may be under way), but a first connection
/// waiting for a certificate to change would only delay the one error line
/// that says what to fix. Known by the TLS library's words in the causes.
fn refused_by_tls(e: &Error) -> bool {
    let line = one_line(e).to_lowercase();
    ["certificate", "fatal alert"]
        .iter()
        .any(|word| line.contains(word))
}

/// An error and its causes on one line.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Error {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        Error::Broker(broker::Error::Connection {
            context: "cannot connect to RabbitMQ at amqp://127.0.0.1:1".into(),
            source: Some(io.into()),
        })
    }

    #[tokio::test]
    async fn a_first_connection_is_retried_until_it_succeeds() {
        let mut calls = 0;
        let out = first_connection("RabbitMQ", Duration::from_secs(30), || {
            calls += 1;
            let ok = calls >= 3;
            async move { if ok { Ok(calls) } else { Err(refused()) } }
        })
        .await;
        assert_eq!(out.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_first_connection_gives_up_after_its_patience_with_the_cause() {
        let start = Instant::now();
        let err = first_connection("RabbitMQ", Duration::from_millis(300), || async {
            Err::<(), _>(refused())
        })
        .await
        .unwrap_err();
        assert!(err.can_be_retried());
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(one_line(&err).contains("refused"), "{}", one_line(&err));
    }

    #[tokio::test]
    async fn a_certificate_refusal_ends_a_first_connection_at_once() {
        let mut calls = 0;
        let err = first_connection("RabbitMQ", Duration::from_secs(30), || {
            calls += 1;
            let io = std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "invalid peer certificate: UnknownIssuer",
            );
            async move {
                Err::<(), _>(Error::Broker(broker::Error::Connection {
                    context: "cannot connect to RabbitMQ at amqps://127.0.0.1:1".into(),
                    source: Some(io.into()),
                }))
            }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1, "{}", one_line(&err));
    }

    #[tokio::test]
    async fn an_error_a_retry_cannot_fix_ends_at_once() {
        let mut calls = 0;
        let err = first_connection("Postgres", Duration::from_secs(30), || {
            calls += 1;
            async { Err::<(), _>(Error::Invalid("bad password".into())) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 1);
        assert!(!err.can_be_retried());
    }
}
