//! The queues and their arguments, declared idempotently on every
//! (re)connect, and deleted by tests and benchmarks that used a private
//! prefix.
//!
//! - work, results, verify: durable quorum queues with `x-delivery-limit`,
//!   dead-lettering at-least-once to the dlq (which needs
//!   `x-overflow=reject-publish`).
//! - retry: a durable quorum queue whose messages expire after
//!   `retry_delay` and are dead-lettered, at-least-once, back to work.
//! - dlq: a durable quorum queue without dead-lettering.

use lapin::Channel;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};

use super::session::map_error;
use super::{QueueStats, RabbitConfig};
use crate::{Queue, Result};

/// Queue arguments for `queue`.
fn arguments(config: &RabbitConfig, queue: Queue) -> FieldTable {
    let mut args = FieldTable::default();
    let mut set = |key: &str, value: AMQPValue| {
        args.insert(key.into(), value);
    };
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    set("x-queue-type", text("quorum"));
    let dead_letter_to = match queue {
        Queue::Work | Queue::Results | Queue::Verify => {
            set(
                "x-delivery-limit",
                AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
            );
            Some(Queue::DeadLetter)
        }
        Queue::Retry => {
            let ttl = i64::try_from(config.retry_delay.as_millis()).unwrap_or(i64::MAX);
            set("x-message-ttl", AMQPValue::LongLongInt(ttl));
            Some(Queue::Work)
        }
        Queue::DeadLetter => None,
    };
    if let Some(target) = dead_letter_to {
        set("x-dead-letter-exchange", text(""));
        set(
            "x-dead-letter-routing-key",
            text(&config.queue_name(target)),
        );
        set("x-dead-letter-strategy", text("at-least-once"));
        set("x-overflow", text("reject-publish"));
    }
    args
}

/// Declares all five queues. Re-declaring with the same arguments is a
/// no-op; different arguments are refused by RabbitMQ (a config error).
pub(crate) async fn declare(channel: &Channel, config: &RabbitConfig) -> Result<()> {
    // Targets first, so nothing is ever dead-lettered into a missing queue.
    for queue in [
        Queue::DeadLetter,
        Queue::Work,
        Queue::Results,
        Queue::Verify,
        Queue::Retry,
    ] {
        let name = config.queue_name(queue);
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments(config, queue),
            )
            .await
            .map_err(|e| map_error(&format!("cannot declare queue {name}"), &e))?;
    }
    Ok(())
}

/// Ready messages and consumers of `queue`, through a passive declare.
pub(crate) async fn stats(
    channel: &Channel,
    config: &RabbitConfig,
    queue: Queue,
) -> Result<QueueStats> {
    let name = config.queue_name(queue);
    let declared = channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::durable().passive(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| map_error(&format!("cannot inspect queue {name}"), &e))?;
    Ok(QueueStats {
        ready: u64::from(declared.message_count()),
        consumers: u64::from(declared.consumer_count()),
    })
}

/// Removes every ready message of `queue`; returns how many.
pub(crate) async fn purge(channel: &Channel, config: &RabbitConfig, queue: Queue) -> Result<u64> {
    let name = config.queue_name(queue);
    let purged = channel
        .queue_purge(name.as_str().into(), Default::default())
        .await
        .map_err(|e| map_error(&format!("cannot purge queue {name}"), &e))?;
    Ok(u64::from(purged))
}

/// Deletes all five queues (with their messages).
pub(crate) async fn delete(channel: &Channel, config: &RabbitConfig) -> Result<()> {
    for queue in Queue::ALL {
        let name = config.queue_name(queue);
        channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| map_error(&format!("cannot delete queue {name}"), &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> RabbitConfig {
        RabbitConfig {
            prefix: "p".into(),
            retry_delay: Duration::from_millis(1500),
            delivery_limit: 3,
            ..RabbitConfig::default()
        }
    }

    fn get<'a>(args: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
        args.inner().get(key)
    }

    #[test]
    fn consumed_queues_limit_deliveries_and_dead_letter_at_least_once() {
        for queue in [Queue::Work, Queue::Results, Queue::Verify] {
            let args = arguments(&config(), queue);
            assert_eq!(
                get(&args, "x-delivery-limit"),
                Some(&AMQPValue::LongLongInt(3))
            );
            assert_eq!(
                get(&args, "x-dead-letter-routing-key"),
                Some(&AMQPValue::LongString("p.dlq".into()))
            );
            assert_eq!(
                get(&args, "x-dead-letter-strategy"),
                Some(&AMQPValue::LongString("at-least-once".into()))
            );
            assert_eq!(
                get(&args, "x-overflow"),
                Some(&AMQPValue::LongString("reject-publish".into()))
            );
        }
    }

    #[test]
    fn retry_expires_back_to_work() {
        let args = arguments(&config(), Queue::Retry);
        assert_eq!(
            get(&args, "x-message-ttl"),
            Some(&AMQPValue::LongLongInt(1500))
        );
        assert_eq!(
            get(&args, "x-dead-letter-routing-key"),
            Some(&AMQPValue::LongString("p.work".into()))
        );
        assert!(get(&args, "x-delivery-limit").is_none());
    }

    #[test]
    fn dead_letter_queue_is_a_plain_quorum_queue() {
        let args = arguments(&config(), Queue::DeadLetter);
        assert_eq!(args.inner().len(), 1);
        assert_eq!(
            get(&args, "x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }
}
