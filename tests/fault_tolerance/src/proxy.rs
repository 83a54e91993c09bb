//! A plain TCP proxy on `127.0.0.1:<random port>` in front of one service,
//! that a drill can open late, cut and heal: the network between one
//! process and RabbitMQ or Postgres, without touching the others.
//!
//! - [`TcpProxy::closed`] reserves a port that refuses connections until
//!   [`TcpProxy::open`] (a service not up yet);
//! - [`TcpProxy::cut`] stops forwarding in both directions without closing
//!   anything, as a network cut does: both peers see silence, and only
//!   their heartbeats or timeouts end the connections; new connections
//!   are accepted and then hang. [`TcpProxy::heal`] forwards again.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy and its own runtime; stops (closing every connection) on drop.
pub struct TcpProxy {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    /// `true` while cut.
    cut: watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("cut", &*self.cut.borrow())
            .finish()
    }
}

impl TcpProxy {
    /// A proxy to `upstream`, forwarding at once.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let proxy = TcpProxy::closed(upstream);
        proxy.open();
        proxy
    }

    /// A proxy to `upstream` whose port refuses connections until
    /// [`TcpProxy::open`]. The port is found free now and bound then.
    pub fn closed(upstream: SocketAddr) -> TcpProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let addr = crate::http::free_addr();
        let (cut, _) = watch::channel(false);
        TcpProxy {
            addr,
            upstream,
            cut,
            runtime: Some(runtime),
        }
    }

    /// Starts accepting on the proxy's port.
    pub fn open(&self) {
        let runtime = self.runtime.as_ref().expect("the proxy's runtime");
        let listener = runtime
            .block_on(TcpListener::bind(self.addr))
            .unwrap_or_else(|e| panic!("bind the proxy on {}: {e}", self.addr));
        let (upstream, cut) = (self.upstream, self.cut.clone());
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut = cut.subscribe();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, cut).await;
                    }
                });
            }
        });
    }

    /// Stops forwarding (both ways), keeping every connection open.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Forwards again what waited and what comes.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn forward(client: TcpStream, server: TcpStream, cut: watch::Receiver<bool>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    tokio::select! {
        () = pipe(cr, sw, cut.clone()) => {}
        () = pipe(sr, cw, cut) => {}
    }
}

/// Copies `from` to `to`, holding every byte while the proxy is cut (so
/// neither side reads the other's heartbeats); ends with either side.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if cut.wait_for(|c| !c).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.wait_for(|c| !c).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
