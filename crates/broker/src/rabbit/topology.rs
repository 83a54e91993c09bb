//! The queues and their arguments, declared idempotently on every
//! (re)connect, and deleted by tests and benchmarks that used a private
//! prefix.
//!
//! - work, verify, and one results queue per partition: durable quorum
//!   queues with `x-delivery-limit`, dead-lettering at-least-once to the dlq
//!   (which needs `x-overflow=reject-publish`). The results queues have
//!   `x-single-active-consumer` and are bound to the direct exchange
//!   `{prefix}.results` under their partition's name (`p03`).
//! - retry: a durable quorum queue whose messages expire after
//!   `retry_delay` and are dead-lettered, at-least-once, back to work.
//! - dlq: a durable quorum queue without dead-lettering.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

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
    if queue.has_delivery_limit() {
        let limit = i64::from(config.delivery_limit);
        set("x-delivery-limit", AMQPValue::LongLongInt(limit));
    }
    if let Queue::Results(_) = queue {
        set("x-single-active-consumer", AMQPValue::Boolean(true));
    }
    if queue == Queue::Retry {
        let ttl = i64::try_from(config.retry_delay.as_millis()).unwrap_or(i64::MAX);
        set("x-message-ttl", AMQPValue::LongLongInt(ttl));
    }
    if let Some(target) = queue.dead_letter_target() {
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

/// Declares the results exchange and every queue, and binds each results
/// queue. Re-declaring with the same arguments is a no-op; different
/// arguments are refused by RabbitMQ (a config error).
pub(crate) async fn declare(channel: &Channel, config: &RabbitConfig) -> Result<()> {
    let exchange = config.results_exchange();
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| map_error(&format!("cannot declare exchange {exchange}"), &e))?;
    // Targets first, so nothing is ever dead-lettered into a missing queue.
    for queue in Queue::all(config.partitions) {
        let name = config.queue_name(queue);
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments(config, queue),
            )
            .await
            .map_err(|e| map_error(&format!("cannot declare queue {name}"), &e))?;
        if let Queue::Results(p) = queue {
            channel
                .queue_bind(
                    name.as_str().into(),
                    exchange.as_str().into(),
                    routing_key(p).as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| map_error(&format!("cannot bind queue {name}"), &e))?;
        }
    }
    Ok(())
}

/// The routing key of partition `p`'s results on the results exchange.
pub(crate) fn routing_key(p: u16) -> String {
    crate::partition_label(p)
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

/// Whether `queue` exists (a passive declare; RabbitMQ answers NOT_FOUND,
/// closing the channel, when it does not).
pub(crate) async fn exists(channel: &Channel, config: &RabbitConfig, queue: Queue) -> Result<bool> {
    let name = config.queue_name(queue);
    match channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::durable().passive(),
            FieldTable::default(),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(map_error(&format!("cannot inspect queue {name}"), &e)),
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
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

/// Deletes every queue (with its messages), the legacy results queue if
/// any, and the results exchange.
pub(crate) async fn delete(channel: &Channel, config: &RabbitConfig) -> Result<()> {
    let mut queues = Queue::all(config.partitions);
    queues.push(Queue::LegacyResults);
    for queue in queues {
        let name = config.queue_name(queue);
        channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| map_error(&format!("cannot delete queue {name}"), &e))?;
    }
    let exchange = config.results_exchange();
    channel
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .map_err(|e| map_error(&format!("cannot delete exchange {exchange}"), &e))?;
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
        for queue in [Queue::Work, Queue::Results(3), Queue::Verify] {
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
    fn results_queues_have_a_single_active_consumer() {
        let args = arguments(&config(), Queue::Results(3));
        assert_eq!(
            get(&args, "x-single-active-consumer"),
            Some(&AMQPValue::Boolean(true))
        );
        assert!(
            get(
                &arguments(&config(), Queue::Work),
                "x-single-active-consumer"
            )
            .is_none()
        );
        assert_eq!(routing_key(3), "p03");
        assert_eq!(config().queue_name(Queue::Results(3)), "p.results.p03");
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
