//! Measures the RabbitMQ broker: publish-with-confirms and consume+ack
//! throughput on a private queue prefix (deleted afterwards).
//!
//! ```text
//! cargo run --release -p broker --example broker_throughput [-- MESSAGES [BATCH]]
//! ```
//! MESSAGES defaults to 100000; BATCH (messages per `publish` call)
//! defaults to all of them. Consumption uses prefetch 1000 and acks with
//! `multiple` every 100 deliveries.

use std::time::Instant;

use broker::{Broker, Consumer, Message, Queue, RabbitBroker, RabbitConfig};

const PREFETCH: u16 = 1000;
const ACK_EVERY: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(count);
    let config = RabbitConfig {
        prefix: format!("bench-{}", uuid::Uuid::new_v4()),
        ..RabbitConfig::from_env()
    };
    let broker = RabbitBroker::connect(config).await?;
    let result = run(&broker, count, batch.max(1)).await;
    broker.delete_topology().await?;
    result
}

async fn run(
    broker: &RabbitBroker,
    count: usize,
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let payload = vec![b'x'; 64];
    let messages: Vec<Message> = (0..count)
        .map(|i| Message::new(Queue::Work, format!("m{i}"), payload.clone()))
        .collect();

    let start = Instant::now();
    for chunk in messages.chunks(batch) {
        broker.publish(chunk.to_vec()).await?;
    }
    let publish = start.elapsed();
    println!(
        "publish+confirm: {count} msgs of {} B in batches of {batch}: {:.2}s = {:.0} msgs/s",
        payload.len(),
        publish.as_secs_f64(),
        count as f64 / publish.as_secs_f64()
    );

    let mut consumer = broker.consume(Queue::Work, PREFETCH).await?;
    let start = Instant::now();
    for received in 1..=count {
        let delivery = consumer.next().await?;
        if received.is_multiple_of(ACK_EVERY) || received == count {
            consumer.ack(delivery.tag, true).await?;
        }
    }
    let consume = start.elapsed();
    println!(
        "consume+ack (prefetch {PREFETCH}, multiple ack every {ACK_EVERY}): {count} msgs: {:.2}s = {:.0} msgs/s",
        consume.as_secs_f64(),
        count as f64 / consume.as_secs_f64()
    );
    Ok(())
}
