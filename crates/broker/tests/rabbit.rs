//! The RabbitMQ broker against a real RabbitMQ (RABBITMQ_URL, default
//! amqp://guest:guest@127.0.0.1:5672/%2f). Each test declares its own
//! random queue prefix and deletes its queues at the end, pass or fail.
//! Without a reachable RabbitMQ these tests fail, saying so.

// Test helpers live outside #[test] functions; a failed call is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use broker::{
    Broker, Consumer, DEATH_REASON_HEADER, DELIVERY_COUNT_HEADER, Delivery, Message, Queue,
    REASON_HEADER, RabbitBroker, RabbitConfig,
};
use tokio::time::Instant;

/// Upper bound on waiting for something RabbitMQ does asynchronously; only
/// reached when the behaviour under test is broken.
const PATIENCE: Duration = Duration::from_secs(60);

fn url() -> String {
    std::env::var("RABBITMQ_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Owns a private prefix and deletes its queues when dropped, even when the
/// test panicked.
struct Topology {
    config: RabbitConfig,
}

impl Topology {
    fn new(retry_delay: Duration, delivery_limit: u32) -> Self {
        let config = RabbitConfig {
            prefix: format!("test-{}", uuid::Uuid::new_v4()),
            retry_delay,
            delivery_limit,
            ..RabbitConfig::new(url())
        };
        Self { config }
    }

    async fn broker(&self) -> RabbitBroker {
        // Logs (reconnect warnings) show with `--nocapture` and RUST_LOG.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        match RabbitBroker::connect(self.config.clone()).await {
            Ok(broker) => broker,
            Err(e) => panic!(
                "these tests need RabbitMQ at {} (set RABBITMQ_URL): {e}",
                self.config.redacted_url()
            ),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let config = self.config.clone();
        // Drop cannot await, and may run during a panic: clean up on a
        // thread with its own runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(broker) = RabbitBroker::connect(config).await {
                    let _ = broker.delete_topology().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn msg(queue: Queue, id: &str) -> Message {
    Message::new(queue, id, format!("payload of {id}").into_bytes())
}

fn id(delivery: &Delivery) -> &str {
    delivery.msg_id.as_deref().unwrap_or("")
}

/// The next delivery, failing the test (not hanging it) if none comes.
async fn next<C: Consumer>(consumer: &mut C) -> Delivery {
    tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("no delivery arrived")
        .expect("consumer failed")
}

/// Waits until `queue` has `ready` messages and `consumers` consumers.
async fn wait_for(broker: &RabbitBroker, queue: Queue, ready: u64, consumers: u64) {
    let start = Instant::now();
    loop {
        let stats = broker.queue_stats(queue).await.unwrap();
        if stats.ready == ready && stats.consumers == consumers {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{queue:?} stuck at {stats:?}, expected {ready} ready / {consumers} consumers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Erlang pids of the connections whose client properties contain `name`.
fn connection_pids(name: &str) -> Vec<String> {
    let listing = Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl must be on PATH for the reconnect tests");
    assert!(
        listing.status.success(),
        "rabbitmqctl list_connections: {}",
        String::from_utf8_lossy(&listing.stderr)
    );
    String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|line| line.contains(name))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Closes one connection from the server side, as an operator or a broker
/// shutting down would.
fn close_connection(pid: &str) {
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", pid, "broker reconnect test"])
        .output()
        .unwrap();
    assert!(
        closed.status.success(),
        "rabbitmqctl close_connection {pid}: {}",
        String::from_utf8_lossy(&closed.stderr)
    );
}

/// Closes the connections whose name contains `name`; returns how many.
fn close_connections(name: &str) -> usize {
    let pids = connection_pids(name);
    for pid in &pids {
        close_connection(pid);
    }
    pids.len()
}

#[tokio::test]
async fn publish_consume_ack_round_trip_with_confirms() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
    broker
        .publish(vec![
            msg(Queue::Work, "a").with_header("attempt", "1"),
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
    assert_eq!(a.header("attempt"), Some("1"));
    assert!(!a.redelivered);
    assert_eq!(a.tag.generation, 1);
    consumer.ack(a.tag, false).await.unwrap();
    consumer.ack(c.tag, true).await.unwrap();

    // Nothing comes back once the consumer is gone: all three were acked.
    drop(consumer);
    wait_for(&broker, Queue::Work, 0, 0).await;
    broker.delete_topology().await.unwrap();
}

#[tokio::test]
async fn unacked_messages_are_redelivered_to_the_next_consumer() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
    broker
        .publish(vec![msg(Queue::Results, "a"), msg(Queue::Results, "b")])
        .await
        .unwrap();
    let mut first = broker.consume(Queue::Results, 10).await.unwrap();
    let a = next(&mut first).await;
    next(&mut first).await;
    first.ack(a.tag, false).await.unwrap();
    drop(first);

    let mut second = broker.consume(Queue::Results, 10).await.unwrap();
    let b = next(&mut second).await;
    assert_eq!(id(&b), "b");
    assert!(b.redelivered);
    assert_eq!(b.header(DELIVERY_COUNT_HEADER), Some("1"));
    second.ack(b.tag, false).await.unwrap();
    drop(second);
    wait_for(&broker, Queue::Results, 0, 0).await;
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
    let messages = (0..5).map(|i| msg(Queue::Work, &format!("m{i}"))).collect();
    broker.publish(messages).await.unwrap();
    let mut consumer = broker.consume(Queue::Work, 2).await.unwrap();
    let m0 = next(&mut consumer).await;
    next(&mut consumer).await;
    // Two delivered and unacked, three still ready.
    wait_for(&broker, Queue::Work, 3, 1).await;
    consumer.ack(m0.tag, false).await.unwrap();
    assert_eq!(id(&next(&mut consumer).await), "m2");
    wait_for(&broker, Queue::Work, 2, 1).await;
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered_with_a_reason() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
    broker
        .publish(vec![msg(Queue::Work, "poison")])
        .await
        .unwrap();
    let mut work = broker.consume(Queue::Work, 10).await.unwrap();
    let poison = next(&mut work).await;
    work.nack(poison.tag, false).await.unwrap();

    let mut dlq = broker.consume(Queue::DeadLetter, 10).await.unwrap();
    let dead = next(&mut dlq).await;
    assert_eq!(id(&dead), "poison");
    assert_eq!(dead.payload, b"payload of poison");
    assert_eq!(dead.header(REASON_HEADER), Some("rejected"));
    assert_eq!(dead.header(DEATH_REASON_HEADER), Some("rejected"));
    dlq.ack(dead.tag, false).await.unwrap();
}

#[tokio::test]
async fn headers_round_trip_including_the_reason() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
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

#[tokio::test]
async fn exceeding_the_delivery_limit_dead_letters() {
    let topology = Topology::new(Duration::from_secs(5), 1);
    let broker = topology.broker().await;
    broker
        .publish(vec![msg(Queue::Verify, "loop")])
        .await
        .unwrap();
    let mut verify = broker.consume(Queue::Verify, 1).await.unwrap();
    // A delivery limit of 1 allows one return: two deliveries in all.
    for _ in 0..2 {
        let delivery = next(&mut verify).await;
        assert_eq!(id(&delivery), "loop");
        verify.nack(delivery.tag, true).await.unwrap();
    }
    let mut dlq = broker.consume(Queue::DeadLetter, 10).await.unwrap();
    let dead = next(&mut dlq).await;
    assert_eq!(id(&dead), "loop");
    assert_eq!(dead.header(REASON_HEADER), Some("delivery_limit"));
    dlq.ack(dead.tag, false).await.unwrap();
    wait_for(&broker, Queue::Verify, 0, 1).await;
}

#[tokio::test]
async fn retry_queue_delays_then_delivers_to_work() {
    let delay = Duration::from_millis(1500);
    let topology = Topology::new(delay, 5);
    let broker = topology.broker().await;
    let mut work = broker.consume(Queue::Work, 10).await.unwrap();
    let start = Instant::now();
    broker
        .publish(vec![msg(Queue::Retry, "again").with_header("attempt", "2")])
        .await
        .unwrap();
    let delivery = next(&mut work).await;
    // RabbitMQ never expires a message early.
    assert!(
        start.elapsed() >= delay,
        "arrived after {:?}",
        start.elapsed()
    );
    assert_eq!(id(&delivery), "again");
    assert_eq!(delivery.header("attempt"), Some("2"));
    assert_eq!(delivery.header(DEATH_REASON_HEADER), Some("expired"));
    // An expiry is no rejection: a work consumer must not see a reason.
    assert_eq!(delivery.header(REASON_HEADER), None);
    work.ack(delivery.tag, false).await.unwrap();
    assert_eq!(broker.queue_depth(Queue::Retry).await.unwrap(), 0);
}

#[tokio::test]
async fn thousands_of_pipelined_publishes_are_all_confirmed() {
    const COUNT: usize = 5_000;
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
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
    drop(consumer);
    wait_for(&broker, Queue::Work, 0, 0).await;
}

#[tokio::test]
async fn concurrent_publishers_share_the_connection() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let broker = broker.clone();
            tokio::spawn(async move {
                let messages = (0..250)
                    .map(|i| msg(Queue::Results, &format!("t{task}-{i}")))
                    .collect();
                broker.publish(messages).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(broker.queue_depth(Queue::Results).await.unwrap(), 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_and_publisher_survive_a_server_side_connection_close() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let prefix = topology.config.prefix.clone();
    let broker = topology.broker().await;
    broker
        .publish(vec![msg(Queue::Work, "a"), msg(Queue::Work, "b")])
        .await
        .unwrap();
    let mut consumer = broker.consume(Queue::Work, 1).await.unwrap();
    let before = next(&mut consumer).await;
    assert_eq!(id(&before), "a");
    assert_eq!(consumer.generation(), 1);

    // Connection names are "batchline {prefix} {role}".
    let closed = close_connections(&format!("batchline {prefix} consumer work"));
    assert_eq!(closed, 1, "the consumer's connection was not found");

    // The unacked delivery comes back on the new connection.
    let after = next(&mut consumer).await;
    assert_eq!(id(&after), "a");
    assert!(after.redelivered);
    assert_eq!(after.tag.generation, 2);
    // The old tag is ignored, not an error, and must not ack anything.
    consumer.ack(before.tag, false).await.unwrap();
    consumer.ack(after.tag, false).await.unwrap();
    let b = next(&mut consumer).await;
    assert_eq!(id(&b), "b");
    consumer.ack(b.tag, false).await.unwrap();

    // The publisher reconnects too, and publishes what it could not.
    let closed = close_connections(&format!("batchline {prefix} publisher"));
    assert_eq!(closed, 1, "the publisher's connection was not found");
    broker.publish(vec![msg(Queue::Work, "c")]).await.unwrap();
    let c = next(&mut consumer).await;
    assert_eq!(id(&c), "c");
    consumer.ack(c.tag, true).await.unwrap();
    drop(consumer);
    wait_for(&broker, Queue::Work, 0, 0).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_a_quick_one_line_error() {
    let config = RabbitConfig::new("amqp://guest:hunter2@127.0.0.1:1/%2f");
    let error = RabbitBroker::connect(config).await.unwrap_err();
    let text = error.to_string();
    assert!(error.can_be_retried(), "{text}");
    assert!(!text.contains('\n') && !text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn redeclaring_with_other_arguments_is_a_config_error() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let _broker = topology.broker().await;
    let other = RabbitConfig {
        delivery_limit: 6,
        ..topology.config.clone()
    };
    let error = RabbitBroker::connect(other).await.unwrap_err();
    assert!(matches!(error, broker::Error::Config(_)), "{error}");
    assert!(error.to_string().contains("x-delivery-limit"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_cut_by_a_connection_loss_is_completed_on_a_new_connection() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let name = format!("batchline {} publisher", topology.config.prefix);
    let broker = topology.broker().await;
    // The close must land while confirms are outstanding; rabbitmqctl is
    // slow to start, so if the publish won the race, try a bigger one.
    let mut count = 50_000;
    loop {
        let pids = connection_pids(&name);
        assert_eq!(pids.len(), 1, "publisher connections: {pids:?}");
        let messages = (0..count)
            .map(|i| msg(Queue::Work, &format!("m{i}")))
            .collect();
        let publishing = tokio::spawn({
            let broker = broker.clone();
            async move { broker.publish(messages).await }
        });
        // Confirms are flowing once messages are enqueued.
        while broker.queue_depth(Queue::Work).await.unwrap() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        close_connection(&pids[0]);
        tokio::time::timeout(PATIENCE, publishing)
            .await
            .expect("publish did not finish")
            .unwrap()
            .expect("publish failed instead of reconnecting");
        // A new publisher connection exists only if the publish itself
        // reconnected; otherwise it had finished before the close.
        let after = connection_pids(&name);
        if after.len() == 1 && after[0] != pids[0] {
            break;
        }
        assert!(count < 400_000, "every publish finished before the close");
        broker.purge(Queue::Work).await.unwrap();
        count *= 2;
    }

    // Every message is there (some possibly twice: consumers deduplicate).
    let mut consumer = broker.consume(Queue::Work, 1000).await.unwrap();
    let mut seen = HashSet::new();
    let mut received = 0usize;
    while seen.len() < count {
        let delivery = next(&mut consumer).await;
        seen.insert(id(&delivery).to_owned());
        received += 1;
        if received.is_multiple_of(100) {
            consumer.ack(delivery.tag, true).await.unwrap();
        }
    }
    assert_eq!(seen.len(), count);
}

#[tokio::test]
async fn a_double_ack_costs_a_reconnect_not_the_consumer() {
    let topology = Topology::new(Duration::from_secs(5), 5);
    let broker = topology.broker().await;
    broker
        .publish(vec![msg(Queue::Work, "a"), msg(Queue::Work, "b")])
        .await
        .unwrap();
    let mut consumer = broker.consume(Queue::Work, 10).await.unwrap();
    let a = next(&mut consumer).await;
    let b = next(&mut consumer).await;
    consumer.ack(a.tag, false).await.unwrap();
    // RabbitMQ closes the channel on an unknown delivery tag.
    consumer.ack(a.tag, false).await.unwrap();
    let again = next(&mut consumer).await;
    assert_eq!(id(&again), "b");
    assert!(again.redelivered);
    assert_eq!(again.tag.generation, b.tag.generation + 1);
    consumer.ack(again.tag, false).await.unwrap();
    drop(consumer);
    wait_for(&broker, Queue::Work, 0, 0).await;
}

#[tokio::test]
async fn wrong_credentials_are_a_config_error() {
    let mut uri: lapin::uri::AMQPUri = url().parse().unwrap();
    uri.authority.userinfo.password = "definitely-not-the-password".into();
    let config = RabbitConfig::new(uri.to_string());
    let error = RabbitBroker::connect(config).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, broker::Error::Config(_)), "{text}");
    assert!(!text.contains("definitely-not"), "{text}");
}
