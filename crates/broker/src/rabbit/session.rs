//! Opening connections to RabbitMQ: one bounded attempt per node (the nodes
//! of a cluster tried in turn), named so the connection can be told apart
//! in `rabbitmqctl list_connections`, errors mapped to retryable or not,
//! and the reconnect backoff.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties, ErrorKind};

use super::RabbitConfig;
use crate::{Error, Result};

/// Longest a single connection attempt may take (TCP + AMQP handshake), so a
/// command pointed at an unreachable broker fails quickly instead of hanging.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest AMQP frame asked for (RabbitMQ's minimum is 4 KiB, its
/// default 128 KiB); longer messages are split into several frames.
const FRAME_MAX: u32 = 16 * 1024;

/// The AMQP heartbeat asked for, in seconds, unless the URL sets its own
/// (`?heartbeat=N`). RabbitMQ's default (60 s) lets a connection cut off by
/// the network look alive for up to two minutes, and with it the single
/// active consumer of every partition it owns; at 5 s, either side drops a
/// silent connection within about 2 x 5 s (docs/operations.md, "Network
/// cuts"), and the queue passes to a standby.
pub const HEARTBEAT_S: u16 = 5;

/// The node (index into the URL list) that last accepted a connection:
/// the next connection tries it first, so a process does not knock on a
/// dead node's door at every reconnect.
static LAST_GOOD_NODE: AtomicUsize = AtomicUsize::new(0);

/// Opens one connection named `batchline {prefix} {role}`; over TLS with
/// the config's CA and client certificate when the URL is `amqps://`.
/// With several nodes' URLs, tries each in turn, starting with the one
/// that last answered; an unreachable node's error only surfaces when no
/// node answers, a refusal that another node would repeat (credentials, a
/// malformed URL) at once.
pub(crate) async fn connect(config: &RabbitConfig, role: &str) -> Result<Connection> {
    let urls: Vec<&str> = config.node_urls().collect();
    if urls.is_empty() {
        return Err(Error::config("no RabbitMQ URL is set"));
    }
    let first = LAST_GOOD_NODE.load(Ordering::Relaxed) % urls.len();
    let mut last_error = None;
    for i in (first..urls.len()).chain(0..first) {
        match connect_node(config, urls[i], role).await {
            Ok(connection) => {
                LAST_GOOD_NODE.store(i, Ordering::Relaxed);
                return Ok(connection);
            }
            Err(e) if !e.can_be_retried() => return Err(e),
            Err(e) => {
                if urls.len() > 1 {
                    tracing::debug!(error = %e, "RabbitMQ node unavailable: trying the next");
                }
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Error::config("no RabbitMQ URL is set")))
}

/// One bounded attempt at one node's `url`.
async fn connect_node(config: &RabbitConfig, url: &str, role: &str) -> Result<Connection> {
    let redacted = RabbitConfig::new(url).redacted_url();
    let mut uri: AMQPUri = url
        .parse()
        .map_err(|e| Error::config(format!("invalid RabbitMQ URL {redacted}: {e}")))?;
    // lapin keeps two buffers of 32 frames per connection: at RabbitMQ's
    // 128 KiB frame that is 8 MiB, times one connection per partition's
    // consumer. batchline's messages are well under a kilobyte; a URL's
    // own `frame_max` still wins.
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    uri.query.heartbeat.get_or_insert(HEARTBEAT_S);
    // TLS material with a plain URL would silently send credentials in
    // clear text, which is what the material was meant to prevent.
    if uri.scheme == AMQPScheme::AMQP && config.tls.is_configured() {
        return Err(Error::config(format!(
            "a CA or client certificate is set for RabbitMQ, but the URL {redacted} is not amqps://"
        )));
    }
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("batchline {} {role}", config.prefix).into());
    let runtime = lapin::runtime::default_runtime()
        .map_err(|e| map_error("no async runtime for RabbitMQ", &e))?;
    let connecting =
        Connection::connect_uri_with_config(uri, properties, config.tls.lapin_config(), runtime);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(map_error(
            &format!("cannot connect to RabbitMQ at {redacted}"),
            &e,
        )),
        Err(_) => Err(Error::connection(format!(
            "cannot connect to RabbitMQ at {redacted}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Maps a lapin error to ours: refusals that a reconnect cannot fix (bad
/// credentials, a queue declared with other arguments) are
/// [`Error::Config`]; everything else is a retryable [`Error::Connection`].
/// NOT_FOUND stays retryable: while RabbitMQ restarts, declaring a queue
/// whose process is not back yet answers it.
pub(crate) fn map_error(context: &str, error: &lapin::Error) -> Error {
    let permanent = match error.kind() {
        ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED | AMQPSoftError::PRECONDITIONFAILED)
        ),
        ErrorKind::InvalidProtocolVersion(_) | ErrorKind::NoDefaultRuntime => true,
        _ => false,
    };
    let (context, source) = (context.to_owned(), Some(error.clone().into()));
    if permanent {
        Error::Config { context, source }
    } else {
        Error::Connection { context, source }
    }
}

/// Delays between reconnect attempts: 100 ms doubling to 5 s, with jitter so
/// a fleet of consumers does not reconnect in lockstep; never gives up.
pub(crate) fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_endless() {
        let delays: Vec<Duration> = backoff().take(50).collect();
        assert_eq!(delays.len(), 50);
        // Jitter adds at most one more min-delay-sized share on top.
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[0] < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn unreachable_broker_fails_fast_with_a_clear_error() {
        // Port 1 on loopback: nothing listens, the connect is refused.
        let config = RabbitConfig::new("amqp://guest:secret@127.0.0.1:1/%2f");
        let error = connect(&config, "test").await.unwrap_err();
        let text = error.to_string();
        assert!(error.can_be_retried(), "{text}");
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    fn rabbitmq_url() -> String {
        std::env::var("RABBITMQ_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
    }

    #[tokio::test]
    async fn a_list_of_nodes_connects_to_the_first_that_answers() {
        // Two nodes that refuse (ports 1 and 2 on loopback), then the real one.
        let list = format!(
            "amqp://guest:secret@127.0.0.1:1/%2f,amqp://guest:secret@127.0.0.1:2/%2f,{}",
            rabbitmq_url()
        );
        let connection = connect(&RabbitConfig::new(list.clone()), "test")
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs RabbitMQ at {} (set RABBITMQ_URL): {e}",
                    rabbitmq_url()
                )
            });
        assert!(connection.status().connected());
        // Again, now starting with the node that answered.
        let again = connect(&RabbitConfig::new(list), "test").await.unwrap();
        assert!(again.status().connected());
    }

    #[tokio::test]
    async fn a_list_of_unreachable_nodes_fails_with_a_retryable_error() {
        let config = RabbitConfig::new(
            "amqp://guest:secret@127.0.0.1:1/%2f, amqp://guest:secret@127.0.0.1:2/%2f",
        );
        let error = connect(&config, "test").await.unwrap_err();
        let text = error.to_string();
        assert!(error.can_be_retried(), "{text}");
        assert!(text.contains("127.0.0.1:"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[tokio::test]
    async fn a_malformed_node_in_a_list_is_a_config_error() {
        let config = RabbitConfig::new("amqp://guest:secret@127.0.0.1:1/%2f,amqp://h:notaport/%2f");
        let error = connect(&config, "test").await.unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error}");
    }

    #[tokio::test]
    async fn tls_material_with_a_plain_url_is_refused() {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let mut config = RabbitConfig::new("amqp://guest:secret@127.0.0.1:1/%2f");
        config.tls = crate::RabbitTls::default()
            .with_ca_pem(made.cert.pem().as_bytes())
            .unwrap();
        let error = connect(&config, "test").await.unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error}");
        assert!(error.to_string().contains("amqps://"), "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[tokio::test]
    async fn malformed_url_is_a_config_error() {
        let config = RabbitConfig::new("amqp://guest:secret@127.0.0.1:notaport/%2f");
        let error = connect(&config, "test").await.unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
