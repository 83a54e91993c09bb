//! Logging (tracing to stderr, text or JSON) and the Prometheus recorder.

use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::Context;
use pipeline::health::Health;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Logs go to stderr: stdout is reserved for command output and verdict
/// lines. `quiet` (the demo without `-v`) shows only errors unless
/// RUST_LOG says otherwise.
pub fn init_tracing(format: LogFormat, quiet: bool) {
    let default = if quiet {
        "error"
    } else {
        "info,sqlx=warn,lapin=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}

/// Installs the Prometheus recorder and serves `/metrics`, `/healthz` and
/// `/readyz` on `addr` (crate::probes); nothing when `addr` is unset.
pub async fn init_metrics(addr: Option<SocketAddr>, health: &Health) -> anyhow::Result<()> {
    let Some(addr) = addr else { return Ok(()) };
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        // Buckets make phase times real histograms (histogram_quantile in Grafana).
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .context("invalid histogram buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    crate::probes::serve(addr, handle, health.clone()).await
}
