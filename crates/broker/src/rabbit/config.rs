//! RabbitMQ settings: where to connect (and with which TLS material), how
//! queues are named, and the queue arguments (retry delay, delivery limit).
//! The password never reaches a log. The URL may list the nodes of a
//! cluster, comma-separated; connections try them in turn.

use std::fmt;
use std::time::Duration;

use super::RabbitTls;
use crate::Queue;

/// How to reach RabbitMQ and how to shape the topology.
///
/// All processes of one pipeline must agree on `retry_delay` and
/// `delivery_limit`: they are queue arguments, and RabbitMQ refuses to
/// re-declare an existing queue with different ones (that surfaces as an
/// [`crate::Error::Config`] at connect).
#[derive(Clone)]
pub struct RabbitConfig {
    /// `amqp://user:pass@host:port/vhost` (`%2f` is the default vhost `/`),
    /// or the nodes of a cluster as several such URLs, comma-separated
    /// (a URL keeps a comma of its own percent-encoded, as `%2C`).
    pub url: String,
    /// Queue names are `{prefix}.work`, `{prefix}.results.p00` …,
    /// `{prefix}.verify`, `{prefix}.retry`, `{prefix}.dlq`.
    pub prefix: String,
    /// Time a message waits in the retry queue before it returns to work.
    pub retry_delay: Duration,
    /// Returns to a queue allowed before a message is dead-lettered.
    pub delivery_limit: u32,
    /// CA and client certificate for `amqps://` URLs.
    pub tls: RabbitTls,
    /// Result partitions: one results queue each (the count is fixed with
    /// the database, and every process of a pipeline reads it from there).
    pub partitions: u16,
}

/// Queue prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "batchline";

/// The environment variables [`RabbitConfig::from_env`] reads (launchers
/// pass these on to the processes they start).
pub const ENV_VARS: [&str; 5] = [
    "RABBITMQ_URL",
    "RABBITMQ_HOST",
    "RABBITMQ_PORT",
    "RABBITMQ_USER",
    "RABBITMQ_PASS",
];

impl RabbitConfig {
    /// A configuration for `url` with the default prefix, retry delay and
    /// delivery limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            retry_delay: Duration::from_millis(crate::DEFAULT_RETRY_DELAY_MS),
            delivery_limit: crate::DEFAULT_DELIVERY_LIMIT,
            tls: RabbitTls::default(),
            partitions: 1,
        }
    }

    /// Reads `RABBITMQ_URL`, or else builds the URL from `RABBITMQ_HOST`,
    /// `RABBITMQ_PORT`, `RABBITMQ_USER` and `RABBITMQ_PASS` (defaults
    /// `127.0.0.1`, `5672`, `guest`, `guest`). A malformed value is reported
    /// by [`crate::RabbitBroker::connect`].
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// As [`RabbitConfig::from_env`], with the variables read through `get`
    /// (e.g. a password that came from a file). Empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |key: &str| get(key).filter(|value| !value.is_empty());
        let url = get("RABBITMQ_URL").unwrap_or_else(|| {
            let host = get("RABBITMQ_HOST").unwrap_or_else(|| "127.0.0.1".into());
            let port = get("RABBITMQ_PORT").unwrap_or_else(|| "5672".into());
            let user = get("RABBITMQ_USER").unwrap_or_else(|| "guest".into());
            let pass = get("RABBITMQ_PASS").unwrap_or_else(|| "guest".into());
            format!(
                "amqp://{}:{}@{host}:{port}/%2f",
                percent_encode(&user),
                percent_encode(&pass)
            )
        });
        Self::new(url)
    }

    /// The URL with its password replaced by `***`, for logs and errors
    /// (every URL's, when it lists several).
    pub fn redacted_url(&self) -> String {
        node_urls(&self.url)
            .map(redact)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The nodes' URLs, in the order given: one unless `url` lists a
    /// cluster's nodes.
    pub fn node_urls(&self) -> impl Iterator<Item = &str> {
        node_urls(&self.url)
    }

    /// The concrete queue name of a logical queue.
    pub fn queue_name(&self, queue: Queue) -> String {
        format!("{}.{}", self.prefix, queue.name())
    }

    /// The direct exchange results are published to (routing key: the
    /// partition's name, `p03`).
    pub fn results_exchange(&self) -> String {
        format!("{}.results", self.prefix)
    }
}

impl Default for RabbitConfig {
    fn default() -> Self {
        Self::new("amqp://guest:guest@127.0.0.1:5672/%2f")
    }
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("retry_delay", &self.retry_delay)
            .field("delivery_limit", &self.delivery_limit)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The URLs of a comma-separated list, blanks around them and empty
/// entries ignored.
pub(crate) fn node_urls(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|url| !url.is_empty())
}

/// Replaces the password of `scheme://user:password@host…` with `***`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    // The last '@' ends the userinfo. Searching the whole rest rather than
    // the authority alone over-redacts a (malformed) vhost holding '@' but
    // never leaks a password that holds a raw '@' or '/'.
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a
/// password with `@`, `:` or `/` survives the trip through the URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(vars: &[(&str, &str)]) -> RabbitConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RabbitConfig::from_lookup(|key| vars.get(key).cloned())
    }

    #[test]
    fn url_wins_over_parts() {
        let config = config_from(&[
            ("RABBITMQ_URL", "amqp://a:b@h:1/v"),
            ("RABBITMQ_HOST", "other"),
        ]);
        assert_eq!(config.url, "amqp://a:b@h:1/v");
    }

    #[test]
    fn parts_have_local_defaults() {
        assert_eq!(
            config_from(&[]).url,
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            config_from(&[("RABBITMQ_URL", ""), ("RABBITMQ_PORT", "5673")]).url,
            "amqp://guest:guest@127.0.0.1:5673/%2f"
        );
    }

    #[test]
    fn credentials_are_percent_encoded_and_parse_back() {
        let config = config_from(&[
            ("RABBITMQ_HOST", "rabbit"),
            ("RABBITMQ_USER", "us er"),
            ("RABBITMQ_PASS", "p@ss:w/rd"),
        ]);
        let uri: lapin::uri::AMQPUri = config.url.parse().unwrap();
        assert_eq!(uri.authority.userinfo.username, "us er");
        assert_eq!(uri.authority.userinfo.password, "p@ss:w/rd");
        assert_eq!(uri.authority.host, "rabbit");
        assert_eq!(uri.vhost, "/");
    }

    #[test]
    fn a_list_of_urls_is_split_and_each_password_hidden() {
        let config =
            RabbitConfig::new(" amqp://u:p1@a:5672/%2f, amqp://u:p2@b:5672/%2f ,,amqp://c/%2f");
        let nodes: Vec<&str> = config.node_urls().collect();
        assert_eq!(
            nodes,
            [
                "amqp://u:p1@a:5672/%2f",
                "amqp://u:p2@b:5672/%2f",
                "amqp://c/%2f"
            ]
        );
        assert_eq!(
            config.redacted_url(),
            "amqp://u:***@a:5672/%2f,amqp://u:***@b:5672/%2f,amqp://c/%2f"
        );
        assert_eq!(RabbitConfig::default().node_urls().count(), 1);
    }

    #[test]
    fn debug_and_redacted_url_hide_the_password() {
        let mut config = RabbitConfig::new("amqp://guest:s3cret@127.0.0.1:5672/%2f");
        assert_eq!(config.redacted_url(), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert!(!format!("{config:?}").contains("s3cret"));

        config.url = "amqp://user:p@ss@host/%2f".into();
        assert_eq!(config.redacted_url(), "amqp://user:***@host/%2f");
        assert!(!format!("{config:?}").contains("ss@"));

        config.url = "amqp://user:pa/ss@host/%2f".into();
        assert_eq!(config.redacted_url(), "amqp://user:***@host/%2f");

        config.url = "amqp://host:5672/%2f".into();
        assert_eq!(config.redacted_url(), "amqp://host:5672/%2f");
    }

    #[test]
    fn queue_names_use_the_prefix() {
        let config = RabbitConfig {
            prefix: "t1".into(),
            ..RabbitConfig::default()
        };
        assert_eq!(config.queue_name(Queue::Work), "t1.work");
        assert_eq!(config.queue_name(Queue::DeadLetter), "t1.dlq");
    }
}
