//! The broker's version, for the warning at start: the partitioned
//! aggregator relies on single-active-consumer fixes of RabbitMQ 3.10.9
//! (#5927) and 3.10.12 (#6447). lapin does not expose the server
//! properties of `connection.start`, so a short probe connection reads
//! them and hangs up before authenticating.

use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, parse_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use lapin::types::AMQPValue;
use lapin::uri::{AMQPScheme, AMQPUri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Error, Result};

/// The oldest RabbitMQ whose single active consumer the partitions can
/// rely on.
pub const MIN_VERSION: (u32, u32, u32) = (3, 10, 12);

/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// AMQP 0-9-1's protocol header.
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// The broker's `version` server property; `None` over `amqps://` (the
/// probe speaks plain TCP only) or when the broker does not say. `url` may
/// list a cluster's nodes, comma-separated: the first that answers says.
pub async fn server_version(url: &str) -> Result<Option<String>> {
    let mut last_error = Error::config("no RabbitMQ URL is set");
    for node in super::config::node_urls(url) {
        match node_version(node).await {
            Err(e) if e.can_be_retried() => last_error = e,
            answer => return answer,
        }
    }
    Err(last_error)
}

async fn node_version(url: &str) -> Result<Option<String>> {
    let uri: AMQPUri = url
        .parse()
        .map_err(|e: String| Error::config(format!("invalid RabbitMQ URL: {e}")))?;
    if uri.scheme == AMQPScheme::AMQPS {
        return Ok(None);
    }
    let addr = (uri.authority.host.clone(), uri.authority.port);
    tokio::time::timeout(PROBE_TIMEOUT, read_version(addr))
        .await
        .map_err(|_| Error::connection("no connection.start from RabbitMQ within 5 s"))?
}

async fn read_version(addr: (String, u16)) -> Result<Option<String>> {
    let failed = |what: &'static str| {
        move |e: std::io::Error| Error::Connection {
            context: what.to_string(),
            source: Some(Box::new(e)),
        }
    };
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(failed("cannot connect to read the RabbitMQ version"))?;
    stream
        .write_all(PROTOCOL_HEADER)
        .await
        .map_err(failed("cannot send the AMQP header"))?;
    // A frame: type (1), channel (2), size (4), payload, end marker (1).
    let mut frame = vec![0u8; 7];
    stream
        .read_exact(&mut frame)
        .await
        .map_err(failed("cannot read connection.start"))?;
    let size = u32::from_be_bytes([frame[3], frame[4], frame[5], frame[6]]) as usize;
    if size > 1 << 20 {
        return Err(Error::connection(format!(
            "connection.start of {size} bytes: not RabbitMQ?"
        )));
    }
    frame.resize(7 + size + 1, 0);
    stream
        .read_exact(&mut frame[7..])
        .await
        .map_err(failed("cannot read connection.start"))?;
    Ok(version_of(&frame))
}

/// The `version` server property of a `connection.start` frame.
fn version_of(frame: &[u8]) -> Option<String> {
    let Ok((_, AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Start(start))))) =
        parse_frame(frame)
    else {
        return None;
    };
    match start.server_properties.inner().get("version")? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

/// True when `version` (`3.10.8`, `3.13.7`, `4.0.5`) is older than
/// [`MIN_VERSION`]; false when it does not parse (a development build).
pub fn older_than_required(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => (major, minor, patch) < MIN_VERSION,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(older_than_required("3.10.8"));
        assert!(older_than_required("3.9.29"));
        assert!(!older_than_required("3.10.12"));
        assert!(!older_than_required("3.13.7"));
        assert!(!older_than_required("4.0.5"));
        assert!(!older_than_required("4.1.0-rc.1"));
        assert!(!older_than_required("dev"));
    }

    #[test]
    fn a_frame_that_is_not_connection_start_has_no_version() {
        assert_eq!(version_of(b"\x08\x00\x00\x00\x00\x00\x00\xce"), None);
        assert_eq!(version_of(b""), None);
    }
}
