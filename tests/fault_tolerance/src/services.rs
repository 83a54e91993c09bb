//! Restarting the shared services under a running pipeline (drill 6):
//! RabbitMQ's application (not the node, so its data and this machine's
//! other users survive) and the local Postgres cluster. Both wait until the
//! service answers again.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `program ARGS`; panics with its output unless it succeeds; returns
/// its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_port(addr: &str, timeout: Duration) {
    let addr: SocketAddr = addr.parse().expect("socket address");
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        assert!(
            start.elapsed() < timeout,
            "{addr} did not answer within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `rabbitmqctl stop_app`, `down` pause, `rabbitmqctl start_app`.
pub fn restart_rabbitmq_app(down: Duration) {
    run("rabbitmqctl", &["-q", "stop_app"]);
    std::thread::sleep(down);
    run("rabbitmqctl", &["-q", "start_app"]);
    run("rabbitmqctl", &["-q", "await_startup"]);
    wait_port("127.0.0.1:5672", Duration::from_secs(60));
}

/// Restarts the local Postgres cluster (`pg_ctlcluster VERSION main restart`).
pub fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql lists the installed Postgres versions")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .max()
        .expect("a Postgres version under /etc/postgresql");
    run(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", &version, "main", "restart"],
    );
    wait_port("127.0.0.1:5432", Duration::from_secs(60));
}
