//! The HTTP side of the drills: a plain `GET` for a stage's probe server
//! (`/metrics`, `/healthz`, `/readyz`), a free loopback port to give it,
//! and [`Gate`], a TCP forwarder that holds new connections until it is
//! opened (a service that does not answer yet, without touching it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// A loopback address nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// `GET path` over HTTP/1.0: `(status, body)`, or `None` while nothing
/// answers on `addr`.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// A TCP forwarder on `127.0.0.1:<random port>` to `upstream` that accepts
/// connections at once but forwards nothing until [`Gate::open`]. With its
/// own runtime; stops on drop.
pub struct Gate {
    pub addr: SocketAddr,
    open: Arc<watch::Sender<bool>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("addr", &self.addr).finish()
    }
}

impl Gate {
    pub fn closed(upstream: SocketAddr) -> Gate {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the gate's runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the gate");
        let addr = listener.local_addr().expect("the gate's address");
        let (open, _) = watch::channel(false);
        let open = Arc::new(open);
        let opened = open.clone();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut opened = opened.subscribe();
                tokio::spawn(async move {
                    if opened.wait_for(|open| *open).await.is_err() {
                        return;
                    }
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Gate {
            addr,
            open,
            runtime: Some(runtime),
        }
    }

    /// Lets the held connections and every later one through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
