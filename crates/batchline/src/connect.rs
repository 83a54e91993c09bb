//! Builds the broker and store the command needs from the global options.

use std::time::Duration;

use anyhow::Context;
use broker::{RabbitBroker, RabbitConfig};
use store::{PgStore, Store};

use crate::cli::Global;
use crate::tls;

/// Connects to Postgres (in the configured schema) and applies migrations.
pub async fn store(global: &Global) -> anyhow::Result<PgStore> {
    tls::check_postgres_files(&global.database_url)?;
    let store = match &global.db_schema {
        Some(schema) => PgStore::connect_with_schema(&global.database_url, schema).await,
        None => PgStore::connect(&global.database_url).await,
    }
    .context("cannot connect to Postgres (DATABASE_URL or DATABASE_URL_FILE)")?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

/// Connects to RabbitMQ and declares the topology.
pub async fn broker(global: &Global) -> anyhow::Result<RabbitBroker> {
    let mut config = RabbitConfig::from_env();
    if let Some(url) = &global.rabbitmq_url {
        config.url = url.clone();
    }
    config.prefix = global.queue_prefix.clone();
    config.retry_delay = Duration::from_millis(global.retry_delay_ms);
    config.delivery_limit = global.delivery_limit;
    config.tls = tls::rabbit_tls(&global.tls)?;
    RabbitBroker::connect(config).await.context(
        "cannot connect to RabbitMQ (RABBITMQ_URL[_FILE] or RABBITMQ_HOST/PORT/USER/PASS[_FILE])",
    )
}
