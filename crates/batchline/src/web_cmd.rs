//! `batchline web`: checks the settings, binds the address, connects the
//! store and broker, and serves the console until Ctrl-C / SIGTERM.

use std::process::ExitCode;

use anyhow::Context;
use web::{WebArgs, WebConfig};

use crate::cli::Global;
use crate::services;

pub async fn run(g: &Global, args: &WebArgs) -> anyhow::Result<ExitCode> {
    // Settings and the address first: a refusal needs no services.
    let config = WebConfig::from_args(args)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen on WEB_ADDR {}", config.addr))?;
    // It holds no state: connected is ready.
    let s = services::start(g).await?;
    web::serve(
        &config,
        listener,
        s.broker,
        s.store,
        s.token.cancelled_owned(),
    )
    .await
    .context("web console stopped")?;
    Ok(ExitCode::SUCCESS)
}
