//! `batchline web`: checks the settings, binds the address, connects the
//! store and broker, and serves the console until Ctrl-C / SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use pipeline::health::Health;
use web::{WebArgs, WebConfig};

use crate::cli::Global;
use crate::{connect, observe, shutdown};

pub async fn run(g: &Global, args: &WebArgs) -> anyhow::Result<ExitCode> {
    // Settings and the address first: a refusal needs no services.
    let config = WebConfig::from_args(args)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on WEB_ADDR {}", config.addr))?;
    let health = Health::new();
    observe::init_metrics(g.metrics_addr, &health).await?;
    let token = shutdown::on_signals();
    let store = connect::store(g).await?;
    let broker = connect::broker(g, &store).await?;
    // It holds no state: connected is ready.
    health.set_ready("connected", true);
    web::serve(&config, listener, broker, store, token.cancelled_owned())
        .await
        .context("web console stopped")?;
    Ok(ExitCode::SUCCESS)
}
