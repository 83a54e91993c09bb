//! The probe server on `METRICS_ADDR`: `/metrics` (Prometheus text from the
//! installed recorder), `/healthz` and `/readyz` (from the process's
//! [`Health`]): 200 with `ok`, or 503 with one reason per line. One small
//! axum app that runs until the process ends.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use pipeline::health::{DEFAULT_MAX_SILENCE, Health, Probe};

/// How often the runtime's own loop beats, and the recorder drains its
/// histograms (what the exporter's built-in listener did every 5 s).
const TICK: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Probes {
    metrics: PrometheusHandle,
    health: Health,
}

/// Binds `addr` (an error names it) and serves the three routes in the
/// background.
pub async fn serve(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    health: Health,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics and probes on {addr} (METRICS_ADDR)"))?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Probes {
            metrics: metrics.clone(),
            health: health.clone(),
        });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the probe server stopped");
        }
    });
    // Until each stage beats for its own loops, this one proves the async
    // runtime still runs tasks.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tick.tick().await;
            health.beat("runtime");
            metrics.run_upkeep();
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    Ok(())
}

async fn render_metrics(State(probes): State<Probes>) -> String {
    probes.metrics.render()
}

async fn healthz(State(probes): State<Probes>) -> (StatusCode, String) {
    answer(probes.health.alive(DEFAULT_MAX_SILENCE))
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, String) {
    answer(probes.health.ready())
}

fn answer(probe: Probe) -> (StatusCode, String) {
    match probe {
        Probe::Pass => (StatusCode::OK, "ok\n".into()),
        Probe::Fail(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            reasons.iter().map(|r| format!("{r}\n")).collect(),
        ),
    }
}
