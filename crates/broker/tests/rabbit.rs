//! The RabbitMQ broker against a real RabbitMQ (RABBITMQ_URL, default
//! amqp://guest:guest@127.0.0.1:5672/%2f): the conformance suite every
//! broker passes, then what only RabbitMQ does (server-side connection
//! closes, refused credentials and arguments). Each test declares its own
//! random queue prefix and deletes its queues at the end, pass or fail.
//! Without a reachable RabbitMQ these tests fail, saying so.

// Test helpers live outside #[test] functions; a failed call is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use broker::{Broker, Consumer, Queue, RabbitBroker, RabbitConfig};
use tokio::time::Instant;

#[macro_use]
mod conformance;

use conformance::{Backend, PATIENCE, RETRY_DELAY, id, msg, next};

conformance_tests!(Rabbit::default());

/// Conformance cases on a private prefix of the real RabbitMQ; the queues
/// go when the case ends.
#[derive(Default)]
struct Rabbit {
    topology: std::sync::Mutex<Option<Topology>>,
}

impl Backend for Rabbit {
    type B = RabbitBroker;

    async fn broker(&self, delivery_limit: u32) -> RabbitBroker {
        let topology = Topology::new(RETRY_DELAY, delivery_limit);
        let broker = topology.broker().await;
        *self.topology.lock().unwrap() = Some(topology);
        broker
    }
}

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
    assert!(error.can_be_retried(), "{error:?}");
    let text = format!("{:#}", anyhow::Error::from(error));
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
    assert!(matches!(error, broker::Error::Config { .. }), "{error}");
    let text = format!("{:#}", anyhow::Error::from(error));
    assert!(text.contains("x-delivery-limit"), "{text}");
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
    assert!(matches!(error, broker::Error::Config { .. }), "{error:?}");
    let text = format!("{:#}", anyhow::Error::from(error));
    assert!(!text.contains("definitely-not"), "{text}");
}

/// The probe reads the version RabbitMQ announces in `connection.start`;
/// `rabbitmqctl` (when this machine runs the broker) names the same one.
#[tokio::test]
async fn the_probe_reads_the_brokers_version() {
    let version = broker::rabbit::server_version(&url())
        .await
        .expect("the probe connects")
        .expect("RabbitMQ announces its version");
    assert!(
        version.split('.').take(2).all(|p| p.parse::<u32>().is_ok()),
        "a version number: {version}"
    );
    if let Ok(out) = Command::new("rabbitmqctl").args(["-q", "version"]).output()
        && out.status.success()
    {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);
    }
}
