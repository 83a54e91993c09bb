//! Ctrl-C / SIGTERM: the first signal cancels the token (stages stop
//! consuming, finish or leave in-flight work, commit state and return); a
//! second signal exits at once.

use tokio_util::sync::CancellationToken;

/// Spawns the signal listener and returns the token it cancels.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_signal().await;
        tracing::info!("signal received: shutting down (send it again to exit at once)");
        cancel.cancel();
        wait_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
