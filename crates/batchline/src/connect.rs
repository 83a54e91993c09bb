//! Builds the broker and store the command needs from the global options.
//! A first connection is retried with backoff for `CONNECT_TIMEOUT_S`
//! (`pipeline::retry::first_connection`), so a process started before its
//! services accept connections (a fresh `docker compose up`) waits for
//! them instead of exiting.

use std::time::Duration;
use store::prelude::*;

use anyhow::Context;
use broker::{RabbitBroker, RabbitConfig};
use clap::Args;
use pipeline::retry::first_connection;
use store::PgStore;

use crate::cli::Global;
use crate::tls;

/// Connects to Postgres (in the configured schema), applies migrations and
/// fixes the partition count (`PARTITIONS`) on a new database.
pub async fn store(global: &Global) -> anyhow::Result<PgStore> {
    tls::check_postgres_files(&global.database_url)?;
    let store = first_connection("Postgres", patience(global), || async {
        Ok(match &global.db_schema {
            Some(schema) => PgStore::connect_with_schema(&global.database_url, schema).await?,
            None => PgStore::connect(&global.database_url).await?,
        })
    })
    .await
    .map_err(|e| {
        gave_up(
            patience(global),
            e,
            "Postgres (DATABASE_URL or DATABASE_URL_FILE)",
        )
    })?;
    store
        .migrate_with_partitions(global.partitions)
        .await
        .context("cannot apply migrations or set the partition count (PARTITIONS)")?;
    Ok(store)
}

/// Connects to RabbitMQ and declares the topology, with one results queue
/// per partition of the database `store` is connected to.
pub async fn broker(global: &Global, store: &PgStore) -> anyhow::Result<RabbitBroker> {
    let config = broker_config(global, store).await?;
    connect_rabbit(config, patience(global)).await
}

/// The RabbitMQ settings, with one results queue per partition of the
/// database `store` is connected to.
pub async fn broker_config(global: &Global, store: &PgStore) -> anyhow::Result<RabbitConfig> {
    let mut config = rabbit_config(global)?;
    config.partitions = store
        .partitions()
        .await
        .context("cannot read the partition count")?;
    Ok(config)
}

/// Connects to RabbitMQ with `config`, waiting up to `patience` for it.
pub async fn connect_rabbit(
    config: RabbitConfig,
    patience: Duration,
) -> anyhow::Result<RabbitBroker> {
    first_connection("RabbitMQ", patience, || {
        let config = config.clone();
        async move { Ok(RabbitBroker::connect(config).await?) }
    })
    .await
    .map_err(|e| {
        gave_up(
            patience,
            e,
            "RabbitMQ (RABBITMQ_URL[_FILE] or RABBITMQ_HOST/PORT/USER/PASS[_FILE])",
        )
    })
}

/// How long a first connection may wait (`CONNECT_TIMEOUT_S`).
pub fn patience(global: &Global) -> Duration {
    Duration::from_secs(global.connect_timeout_s)
}

/// The error of a first connection that did not come: one line, saying how
/// long it waited when waiting could have helped.
fn gave_up(patience: Duration, e: pipeline::Error, service: &str) -> anyhow::Error {
    let e = anyhow::Error::new(e);
    if e.downcast_ref::<pipeline::Error>()
        .is_some_and(pipeline::Error::can_be_retried)
    {
        e.context(format!(
            "gave up connecting to {service} after {}s (CONNECT_TIMEOUT_S)",
            patience.as_secs()
        ))
    } else {
        e.context(format!("cannot connect to {service}"))
    }
}

/// Warns when RabbitMQ is older than the partitions' single active
/// consumer needs (docs/operations.md); says so when it cannot tell.
pub async fn warn_if_rabbitmq_too_old(broker: &RabbitBroker) {
    let (major, minor, patch) = broker::rabbit::MIN_VERSION;
    match broker::rabbit::server_version(&broker.config().url).await {
        Ok(Some(v)) if broker::rabbit::older_than_required(&v) => tracing::warn!(
            rabbitmq = %v,
            "RabbitMQ {v} is older than {major}.{minor}.{patch}: its single active consumer has known bugs \
             (#5927, #6447) that can stall a partition's hand-over; upgrade RabbitMQ (docs/operations.md)"
        ),
        Ok(Some(v)) => tracing::info!(rabbitmq = %v, "RabbitMQ version"),
        Ok(None) => tracing::info!(
            "RabbitMQ version not checked (TLS connection): {major}.{minor}.{patch} or newer is required"
        ),
        Err(e) => tracing::info!(
            error = &e as &dyn std::error::Error,
            "could not read the RabbitMQ version: {major}.{minor}.{patch} or newer is required"
        ),
    }
}

/// Where RabbitMQ is, with which TLS material, and the queue arguments,
/// from the options (the URL from its parts when `RABBITMQ_URL` is unset).
fn rabbit_config(global: &Global) -> anyhow::Result<RabbitConfig> {
    let mut config = RabbitConfig::from_env();
    if let Some(url) = &global.rabbitmq_url {
        config.url = url.clone();
    }
    config.prefix = global.queue_prefix.clone();
    config.retry_delay = Duration::from_millis(global.retry_delay_ms);
    config.delivery_limit = global.delivery_limit;
    config.tls = tls::rabbit_tls(&global.tls)?;
    Ok(config)
}

/// The shared services, for commands that build isolated stacks on them;
/// their processes get the TLS options this process has.
pub fn services(global: &Global) -> anyhow::Result<launcher::Services> {
    let tls_vars = launcher::env_names(&tls::TlsArgs::augment_args(clap::Command::new("tls")));
    Ok(launcher::Services {
        database_url: global.database_url.clone(),
        rabbit: rabbit_config(global)?,
        env: launcher::Env::passthrough(&tls_vars.into_iter().collect::<Vec<_>>()),
    })
}
