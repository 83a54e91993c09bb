//! `batchline web`: checks the settings, binds the address, connects the
//! store, and serves the console until Ctrl-C / SIGTERM. The broker is
//! connected in the background: the console shows results with Postgres
//! alone and refuses new batches until RabbitMQ answers.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use broker::{Late, RabbitBroker, RabbitConfig};
use tokio_util::sync::CancellationToken;
use web::{WebArgs, WebConfig};

use crate::cli::Global;
use crate::{connect, services};

pub async fn run(g: &Global, args: &WebArgs) -> anyhow::Result<ExitCode> {
    // Settings and the address first: a refusal needs no services.
    let config = WebConfig::from_args(args)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on WEB_ADDR {}", config.addr))?;
    // It holds no state: connected to Postgres is ready.
    let (health, token, store) = services::start_without_broker(g).await?;
    health.set_ready("connected", true);
    let broker = Late::new();
    let rabbit = connect::broker_config(g, &store).await?;
    tokio::spawn(connect_in_background(rabbit, broker.clone(), token.clone()));
    web::serve(&config, listener, broker, store, token.cancelled_owned())
        .await
        .context("web console stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Connects to RabbitMQ, however long it takes (each wait logged), and
/// hands the connection to the console; until then it refuses new batches.
async fn connect_in_background(
    config: RabbitConfig,
    broker: Late<RabbitBroker>,
    shutdown: CancellationToken,
) {
    loop {
        let connecting = connect::connect_rabbit(config.clone(), Duration::MAX);
        let connected = tokio::select! {
            connected = connecting => connected,
            () = shutdown.cancelled() => return,
        };
        match connected {
            Ok(rabbit) => {
                tracing::info!("connected to RabbitMQ: the console accepts new batches");
                broker.connected(rabbit);
                return;
            }
            // A refusal a retry cannot fix (credentials, queue arguments):
            // said once a minute, the console keeps showing results.
            Err(e) => {
                tracing::error!("{e:#}; new batches stay refused");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}
