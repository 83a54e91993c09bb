//! The contract every [`Broker`] must keep (the crate docs' "Semantics both
//! implementations share"), as one generic async fn per case, instantiated
//! for each implementation by `conformance_tests!` in `tests/memory.rs` and
//! `tests/rabbit.rs`. What only one implementation does (injected failures,
//! server-side connection closes) is tested next to it.
//!
//! No case asserts on how long anything took, except that a delayed retry
//! is never delivered early.

// Helpers outside #[test] fns: clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use broker::{
    Broker, Consumer, DEATH_COUNT_HEADER, DEATH_REASON_HEADER, DELIVERY_COUNT_HEADER, Delivery,
    Error, Message, Queue, REASON_HEADER,
};
use tokio::time::Instant;

/// Upper bound on waiting for something a broker does asynchronously; only
/// reached when the behaviour under test is broken.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How long a consumer must stay quiet to show nothing more is coming.
const QUIET: Duration = Duration::from_millis(300);

/// The retry delay every case's broker is built with.
pub const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Makes a fresh, isolated broker (own queues) for one case.
pub trait Backend: Send + Sync + 'static {
    type B: Broker;
    fn broker(&self, delivery_limit: u32) -> impl Future<Output = Self::B> + Send;
}

/// One `#[tokio::test]` per conformance case, each given `$backend`.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr) => {
        conformance_tests!($backend =>
            round_trip_keeps_order_payload_and_headers,
            unacked_deliveries_return_when_the_consumer_goes_away,
            prefetch_bounds_unacked_deliveries,
            nack_with_requeue_redelivers,
            nack_without_requeue_dead_letters_with_a_reason,
            exceeding_the_delivery_limit_dead_letters,
            retry_holds_messages_for_the_delay_then_moves_them_to_work,
            multiple_ack_covers_every_earlier_delivery,
            the_same_msg_id_published_twice_is_delivered_twice,
            thousands_of_pipelined_publishes_are_all_confirmed,
            concurrent_publishers_all_get_confirmed,
            a_dropped_next_loses_nothing,
            messages_rabbitmq_cannot_carry_are_refused,
            headers_round_trip_including_the_reason,
            one_consumer_of_a_results_queue_is_active_at_a_time,
            a_cancelled_consumer_lets_go_without_returning_anything,
        );
    };
    ($backend:expr => $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                conformance::$case($backend).await;
            }
        )*
    };
}

pub fn msg(queue: Queue, id: &str) -> Message {
    Message::new(queue, id, format!("payload of {id}").into_bytes())
}

pub fn id(delivery: &Delivery) -> &str {
    delivery.msg_id.as_deref().unwrap_or("")
}

/// The next delivery, failing the test (not hanging it) if none comes.
pub async fn next<C: Consumer>(consumer: &mut C) -> Delivery {
    tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("no delivery arrived")
        .expect("consumer failed")
}

/// Fails if `consumer` receives anything within [`QUIET`].
async fn assert_quiet<C: Consumer>(consumer: &mut C) {
    if let Ok(got) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!("expected no delivery, got {:?}", got.map(|d| d.msg_id));
    }
}

/// Waits until `queue` has `ready` messages ready for delivery.
pub async fn wait_depth<B: Broker>(broker: &B, queue: Queue, ready: u64) {
    let start = Instant::now();
    loop {
        let depth = broker.queue_depth(queue).await.unwrap();
        if depth == ready {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{queue:?} stuck at {depth} ready, expected {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn round_trip_keeps_order_payload_and_headers<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    broker
        .publish(vec![
            msg(Queue::Work, "a")
                .with_header("z", "1")
                .with_header("k", "v"),
            msg(Queue::Work, "b"),
            msg(Queue::Work, "c"),
        ])
        .await
        .unwrap();
    // Confirmed means enqueued.
    assert_eq!(broker.queue_depth(Queue::Work).await.unwrap(), 3);

    let mut consumer = broker.consume(Queue::Work, 10).await.unwrap();
    let a = next(&mut consumer).await;
    let b = next(&mut consumer).await;
    let c = next(&mut consumer).await;
    assert_eq!([id(&a), id(&b), id(&c)], ["a", "b", "c"]);
    assert_eq!(a.payload, b"payload of a");
    assert!(!a.redelivered);
    // Sorted and unique, as from a RabbitMQ field table.
    assert_eq!(
        a.headers,
        vec![("k".into(), "v".into()), ("z".into(), "1".into())]
    );
    consumer.ack(a.tag, false).await.unwrap();
    consumer.ack(c.tag, true).await.unwrap();
    // Nothing comes back once the consumer is gone: all three were acked.
    drop(consumer);
    let mut again = broker.consume(Queue::Work, 10).await.unwrap();
    assert_quiet(&mut again).await;
    assert_eq!(broker.queue_depth(Queue::Work).await.unwrap(), 0);
}

pub async fn unacked_deliveries_return_when_the_consumer_goes_away<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    broker
        .publish(vec![
            msg(Queue::Results(0), "a"),
            msg(Queue::Results(0), "b"),
            msg(Queue::Results(0), "c"),
        ])
        .await
        .unwrap();
    let mut first = broker.consume(Queue::Results(0), 2).await.unwrap();
    let a = next(&mut first).await;
    first.ack(a.tag, false).await.unwrap();
    let _b = next(&mut first).await;
    // "c" may have been pushed to `first` (prefetch) without being read:
    // it comes back too.
    drop(first);

    let mut second = broker.consume(Queue::Results(0), 10).await.unwrap();
    // Returned messages may come back in any order.
    let mut back = [next(&mut second).await, next(&mut second).await];
    back.sort_by(|x, y| id(x).cmp(id(y)));
    let [b, c] = back;
    assert_eq!((id(&b), id(&c)), ("b", "c"));
    assert!(b.redelivered);
    assert_eq!(b.header(DELIVERY_COUNT_HEADER), Some("1"));
    second.ack(b.tag, false).await.unwrap();
    second.ack(c.tag, false).await.unwrap();
    assert_quiet(&mut second).await;
}

pub async fn prefetch_bounds_unacked_deliveries<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let messages = (0..5).map(|i| msg(Queue::Work, &format!("m{i}"))).collect();
    broker.publish(messages).await.unwrap();
    let mut consumer = broker.consume(Queue::Work, 2).await.unwrap();
    let m0 = next(&mut consumer).await;
    next(&mut consumer).await;
    // Two delivered and unacked, three still ready.
    assert_quiet(&mut consumer).await;
    wait_depth(&broker, Queue::Work, 3).await;
    consumer.ack(m0.tag, false).await.unwrap();
    assert_eq!(id(&next(&mut consumer).await), "m2");
    assert_quiet(&mut consumer).await;
    wait_depth(&broker, Queue::Work, 2).await;
}

pub async fn nack_with_requeue_redelivers<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    broker.publish(vec![msg(Queue::Work, "a")]).await.unwrap();
    let mut consumer = broker.consume(Queue::Work, 1).await.unwrap();
    let a = next(&mut consumer).await;
    consumer.nack(a.tag, true).await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(id(&again), "a");
    assert!(again.redelivered);
    assert_eq!(again.header(DELIVERY_COUNT_HEADER), Some("1"));
    consumer.ack(again.tag, false).await.unwrap();
    assert_quiet(&mut consumer).await;
}

pub async fn nack_without_requeue_dead_letters_with_a_reason<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    broker
        .publish(vec![
            msg(Queue::Work, "plain"),
            msg(Queue::Work, "explained").with_header(REASON_HEADER, "bad json"),
        ])
        .await
        .unwrap();
    let mut work = broker.consume(Queue::Work, 10).await.unwrap();
    for _ in 0..2 {
        let delivery = next(&mut work).await;
        work.nack(delivery.tag, false).await.unwrap();
    }
    let mut dlq = broker.consume(Queue::DeadLetter, 10).await.unwrap();
    let mut dead = [next(&mut dlq).await, next(&mut dlq).await];
    dead.sort_by(|x, y| id(x).cmp(id(y)));
    let [explained, plain] = dead;
    assert_eq!(id(&plain), "plain");
    assert_eq!(plain.payload, b"payload of plain");
    assert_eq!(plain.header(REASON_HEADER), Some("rejected"));
    assert_eq!(plain.header(DEATH_REASON_HEADER), Some("rejected"));
    assert_eq!(plain.header(DEATH_COUNT_HEADER), Some("1"));
    assert_eq!(explained.header(REASON_HEADER), Some("bad json"));
    dlq.ack(plain.tag, false).await.unwrap();
    dlq.ack(explained.tag, false).await.unwrap();
    assert_eq!(broker.queue_depth(Queue::Work).await.unwrap(), 0);
}

pub async fn exceeding_the_delivery_limit_dead_letters<K: Backend>(k: K) {
    let broker = k.broker(2).await;
    broker
        .publish(vec![msg(Queue::Verify, "poison")])
        .await
        .unwrap();
    let mut consumer = broker.consume(Queue::Verify, 1).await.unwrap();
    // Returned twice (the limit) it is still delivered; the third return
    // dead-letters it.
    for delivery_count in [None, Some("1"), Some("2")] {
        let delivery = next(&mut consumer).await;
        assert_eq!(id(&delivery), "poison");
        assert_eq!(delivery.header(DELIVERY_COUNT_HEADER), delivery_count);
        consumer.nack(delivery.tag, true).await.unwrap();
    }
    assert_quiet(&mut consumer).await;
    drop(consumer);

    // Losing the consumer counts as a return too. (Another queue: the
    // consumer just dropped may still be registered for a moment, and would
    // take a message published to its queue.)
    broker
        .publish(vec![msg(Queue::Results(0), "crasher")])
        .await
        .unwrap();
    for _ in 0..3 {
        let mut consumer = broker.consume(Queue::Results(0), 1).await.unwrap();
        assert_eq!(id(&next(&mut consumer).await), "crasher");
    }
    let mut dlq = broker.consume(Queue::DeadLetter, 10).await.unwrap();
    let poison = next(&mut dlq).await;
    let crasher = next(&mut dlq).await;
    assert_eq!(id(&poison), "poison");
    assert_eq!(poison.header(REASON_HEADER), Some("delivery_limit"));
    assert_eq!(id(&crasher), "crasher");
    assert_eq!(crasher.header(REASON_HEADER), Some("delivery_limit"));
    dlq.ack(crasher.tag, true).await.unwrap();
    wait_depth(&broker, Queue::Results(0), 0).await;
}

pub async fn retry_holds_messages_for_the_delay_then_moves_them_to_work<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let mut work = broker.consume(Queue::Work, 10).await.unwrap();
    let start = Instant::now();
    broker
        .publish(vec![
            msg(Queue::Retry, "r1").with_header("attempt", "2"),
            msg(Queue::Retry, "r2"),
        ])
        .await
        .unwrap();
    let r1 = next(&mut work).await;
    let r2 = next(&mut work).await;
    // Never delivered early.
    assert!(
        start.elapsed() >= RETRY_DELAY,
        "after {:?}",
        start.elapsed()
    );
    assert_eq!((id(&r1), id(&r2)), ("r1", "r2"));
    assert_eq!(r1.header("attempt"), Some("2"));
    assert_eq!(r1.header(DEATH_REASON_HEADER), Some("expired"));
    // Expiry is no rejection: nothing for a work consumer to act on.
    assert_eq!(r1.header(REASON_HEADER), None);
    assert!(!r1.redelivered);
    work.ack(r2.tag, true).await.unwrap();
    assert_eq!(broker.queue_depth(Queue::Retry).await.unwrap(), 0);
}

pub async fn multiple_ack_covers_every_earlier_delivery<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let messages = ["a", "b", "c", "d"]
        .iter()
        .map(|i| msg(Queue::Work, i))
        .collect();
    broker.publish(messages).await.unwrap();
    let mut consumer = broker.consume(Queue::Work, 10).await.unwrap();
    let mut tags = Vec::new();
    for _ in 0..4 {
        tags.push(next(&mut consumer).await.tag);
    }
    consumer.ack(tags[2], true).await.unwrap();
    drop(consumer);
    let mut again = broker.consume(Queue::Work, 10).await.unwrap();
    let d = next(&mut again).await;
    assert_eq!(id(&d), "d");
    again.ack(d.tag, false).await.unwrap();
    assert_quiet(&mut again).await;
}

pub async fn the_same_msg_id_published_twice_is_delivered_twice<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    broker
        .publish(vec![msg(Queue::Work, "dup"), msg(Queue::Work, "dup")])
        .await
        .unwrap();
    let mut consumer = broker.consume(Queue::Work, 10).await.unwrap();
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    assert_eq!((id(&first), id(&second)), ("dup", "dup"));
    assert_ne!(first.tag, second.tag);
    consumer.ack(second.tag, true).await.unwrap();
}

pub async fn thousands_of_pipelined_publishes_are_all_confirmed<K: Backend>(k: K) {
    const COUNT: usize = 5_000;
    let broker = k.broker(5).await;
    let messages = (0..COUNT)
        .map(|i| msg(Queue::Work, &format!("m{i}")))
        .collect();
    broker.publish(messages).await.unwrap();
    assert_eq!(broker.queue_depth(Queue::Work).await.unwrap(), COUNT as u64);

    let mut consumer = broker.consume(Queue::Work, 500).await.unwrap();
    let mut seen = HashSet::new();
    for i in 1..=COUNT {
        let delivery = next(&mut consumer).await;
        seen.insert(id(&delivery).to_owned());
        if i.is_multiple_of(100) {
            consumer.ack(delivery.tag, true).await.unwrap();
        }
    }
    assert_eq!(seen.len(), COUNT);
    assert_quiet(&mut consumer).await;
}

pub async fn concurrent_publishers_all_get_confirmed<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let broker = broker.clone();
            tokio::spawn(async move {
                let messages = (0..250)
                    .map(|i| msg(Queue::Results(0), &format!("t{task}-{i}")))
                    .collect();
                broker.publish(messages).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(broker.queue_depth(Queue::Results(0)).await.unwrap(), 2_000);
}

pub async fn a_dropped_next_loses_nothing<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let mut consumer = broker.consume(Queue::Work, 10).await.unwrap();
    // Poll with nothing to deliver, then drop the future, as a losing
    // `select!` branch does.
    assert_quiet(&mut consumer).await;
    broker.publish(vec![msg(Queue::Work, "a")]).await.unwrap();
    let delivered = next(&mut consumer).await;
    assert_eq!(id(&delivered), "a");
    consumer.ack(delivered.tag, false).await.unwrap();
}

pub async fn messages_rabbitmq_cannot_carry_are_refused<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let long = "x".repeat(256);
    let error = broker
        .publish(vec![msg(Queue::Work, &long)])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Invalid(_)), "{error}");
    let error = broker
        .publish(vec![msg(Queue::Work, "a").with_header(long, "v")])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Invalid(_)), "{error}");
    assert_eq!(broker.queue_depth(Queue::Work).await.unwrap(), 0);
}

pub async fn headers_round_trip_including_the_reason<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    broker
        .publish(vec![
            msg(Queue::DeadLetter, "bad")
                .with_header(REASON_HEADER, "undecodable: expected value at line 1")
                .with_header("stage", "aggregator")
                .with_header("empty", ""),
        ])
        .await
        .unwrap();
    let mut dlq = broker.consume(Queue::DeadLetter, 10).await.unwrap();
    let dead = next(&mut dlq).await;
    assert_eq!(
        dead.headers,
        vec![
            ("empty".to_string(), String::new()),
            ("stage".to_string(), "aggregator".to_string()),
            (
                REASON_HEADER.to_string(),
                "undecodable: expected value at line 1".to_string()
            ),
        ]
    );
    dlq.ack(dead.tag, false).await.unwrap();
}

pub async fn one_consumer_of_a_results_queue_is_active_at_a_time<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let mut first = broker.consume(Queue::Results(0), 10).await.unwrap();
    let mut second = broker.consume(Queue::Results(0), 10).await.unwrap();
    let messages = (0..4)
        .map(|i| msg(Queue::Results(0), &format!("m{i}")))
        .collect();
    broker.publish(messages).await.unwrap();
    let a = next(&mut first).await;
    let b = next(&mut first).await;
    assert_eq!((id(&a), id(&b)), ("m0", "m1"));
    first.ack(b.tag, true).await.unwrap();
    // The standby gets nothing while the active consumer lives.
    assert_quiet(&mut second).await;
    drop(first);
    // Then it takes over, the unacked ones (returned) included.
    let mut got = [next(&mut second).await, next(&mut second).await];
    got.sort_by(|x, y| id(x).cmp(id(y)));
    assert_eq!((id(&got[0]), id(&got[1])), ("m2", "m3"));
    second.ack(got[0].tag, false).await.unwrap();
    second.ack(got[1].tag, false).await.unwrap();
    assert_quiet(&mut second).await;
}

pub async fn a_cancelled_consumer_lets_go_without_returning_anything<K: Backend>(k: K) {
    let broker = k.broker(5).await;
    let mut active = broker.consume(Queue::Results(0), 3).await.unwrap();
    let mut standby = broker.consume(Queue::Results(0), 10).await.unwrap();
    let messages = (0..6)
        .map(|i| msg(Queue::Results(0), &format!("m{i}")))
        .collect();
    broker.publish(messages).await.unwrap();
    let first = next(&mut active).await;
    active.cancel().await.unwrap();
    // What was already on its way still comes, then the end.
    let mut drained = vec![first];
    loop {
        match tokio::time::timeout(PATIENCE, active.next()).await {
            Ok(Ok(d)) => drained.push(d),
            Ok(Err(Error::Closed)) => break,
            Ok(Err(e)) => panic!("draining a cancelled consumer: {e}"),
            Err(_) => panic!("a cancelled consumer never said it was done"),
        }
    }
    assert!(
        (1..=3).contains(&drained.len()),
        "{} drained",
        drained.len()
    );
    for d in &drained {
        assert!(!d.redelivered);
        active.ack(d.tag, false).await.unwrap();
    }
    // The standby takes the rest; nothing was returned on the way.
    let rest = 6 - drained.len();
    for _ in 0..rest {
        let d = next(&mut standby).await;
        assert!(!d.redelivered, "{:?} came back", d.msg_id);
        assert_eq!(d.header(DELIVERY_COUNT_HEADER), None);
        standby.ack(d.tag, false).await.unwrap();
    }
    drop(active);
    assert_quiet(&mut standby).await;
}
