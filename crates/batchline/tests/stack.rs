//! `batchline stack`, the local mode of `make up`, as users drive it, with a
//! fake service binary (`BATCHLINE_BIN`: a shell script that logs what it
//! was started with and drains on SIGTERM), so these need no Postgres,
//! RabbitMQ or release build. Each test has its own WORKER_DATA_DIR and
//! working directory, and runs the command with a clean environment. The
//! services get only the variables batchline reads, so the fake takes its
//! own knobs (FAKE_*) from `fake.env` beside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use launcher::{CliOutput, Env, Signal, run_once_in};

const PATIENCE: Duration = Duration::from_secs(60);

/// The fake: `migrate` and `submit` finish; the stages run until SIGTERM,
/// then drain for FAKE_DRAIN s; anything else echoes its arguments.
const FAKE: &str = r#"#!/usr/bin/env bash
knobs=$(dirname "$0")/fake.env
[[ -f $knobs ]] && . "$knobs"
case $1 in
migrate)
  [[ -n ${FAKE_MIGRATE_FAILS:-} ]] && { echo "cannot connect to Postgres" >&2; exit 1; }
  echo "migrations applied" ;;
executor | aggregator | verifier)
  [[ ${FAKE_EXIT:-} == "$1" ]] && { echo "$1: bad configuration" >&2; exit 2; }
  trap 'echo "$1 got SIGTERM"; sleep "${FAKE_DRAIN:-0.2}"; echo "$1 stopped"; exit 0' TERM
  echo "$1 up pid=$$ delay=${SIMULATION_DELAY_MS-unset} metrics=${METRICS_ADDR-unset} db=${DATABASE_URL-unset} prefix=${QUEUE_PREFIX-unset} schema=${DB_SCHEMA-unset}"
  while :; do
    sleep 0.2 &
    wait $!
  done
  ;;
submit)
  echo "submit $*"
  sleep "${FAKE_SUBMIT_S:-1}"
  ;;
*) echo "cli $*" ;;
esac
"#;

/// A working directory, a data directory and the fake binary.
struct Drill {
    dir: tempfile::TempDir,
    fake: PathBuf,
}

impl Drill {
    fn new() -> Drill {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("bin").join("batchline");
        std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
        std::fs::write(&fake, FAKE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        Drill { dir, fake }
    }

    /// The fake's knobs (`FAKE_DRAIN=30`, …) from now on.
    fn knobs(&self, lines: &str) {
        std::fs::write(self.fake.with_file_name("fake.env"), lines).unwrap();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("wd")
    }

    /// The environment of every command: clean, the fake, the data dir,
    /// quick start checks and stops, then `extra`.
    fn env(&self, extra: &[(&str, &str)]) -> Env {
        let mut env = Env::clean_base();
        env.set("BATCHLINE_BIN", self.fake.display().to_string())
            .set("WORKER_DATA_DIR", self.data().display().to_string())
            .set("STACK_START_CHECK_MS", "500")
            .set("STOP_TIMEOUT", "5");
        env.extend(&Env::from_pairs(extra));
        env
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> CliOutput {
        let bin = Path::new(env!("CARGO_BIN_EXE_batchline"));
        let mut full = vec!["stack"];
        full.extend(args);
        run_once_in(
            Some(self.dir.path()),
            bin,
            &full,
            &self.env(extra),
            PATIENCE,
        )
        .unwrap()
    }

    /// Runs and asserts success.
    fn ok(&self, args: &[&str], extra: &[(&str, &str)]) -> CliOutput {
        let out = self.run(args, extra);
        assert!(out.success(), "batchline stack {args:?} failed: {out:?}");
        out
    }

    fn pid(&self, name: &str) -> Option<u32> {
        let text =
            std::fs::read_to_string(self.data().join("run").join(format!("{name}.pid"))).ok()?;
        text.trim().parse().ok()
    }

    /// No pid or env file left: the stack forgot every service.
    fn run_dir_is_empty(&self) -> bool {
        std::fs::read_dir(self.data().join("run"))
            .unwrap()
            .next()
            .is_none()
    }

    fn alive(&self, name: &str) -> bool {
        self.pid(name).is_some_and(launcher::procinfo::is_running)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.data().join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }

    /// Waits until `name`'s log holds `text` `n` times.
    fn wait_log(&self, name: &str, text: &str, n: usize) {
        let start = Instant::now();
        while self.log(name).matches(text).count() < n {
            assert!(
                start.elapsed() < PATIENCE,
                "{name}'s log never held {n}× {text:?}:\n{}",
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Drill {
    fn drop(&mut self) {
        // Whatever a failed test left running.
        let _ = self.run(&["down"], &[("STOP_TIMEOUT", "1")]);
    }
}

fn gone(pid: u32) -> bool {
    !launcher::procinfo::is_running(pid)
}

#[test]
fn up_detached_kill_restart_logs_cli_and_down() {
    let d = Drill::new();
    let out = d.ok(&["up-detached"], &[]);
    assert!(out.stderr.contains("[stack] mode: local"), "{out:?}");
    assert!(
        out.stdout.contains("NAME") && out.stdout.contains("worker-2"),
        "prints what runs: {out:?}"
    );
    for s in ["worker-1", "worker-2", "worker-3"] {
        assert!(d.alive(s), "{s} runs");
        d.wait_log(s, " up pid=", 1);
    }
    d.wait_log(
        "runner",
        "submit submit --count 3 --runs 20000 --chunk-size 1000 --wait",
        1,
    );
    assert!(
        d.log("worker-1").contains("delay=2 "),
        "executors get SIMULATION_DELAY_MS=2 by default"
    );

    let (p1, p2) = (d.pid("worker-1").unwrap(), d.pid("worker-2").unwrap());
    let out = d.ok(&["kill", "2"], &[]);
    assert!(
        out.stderr
            .contains(&format!("sent SIGKILL to worker-2 (pid {p2})")),
        "{out:?}"
    );
    assert!(gone(p2) && d.alive("worker-1") && d.alive("worker-3"));
    assert!(d.log("worker-2").contains("worker-2 killed with SIGKILL"));
    let out = d.run(&["kill", "2"], &[]);
    assert!(
        !out.success() && out.stderr.contains("worker-2 is not running"),
        "{out:?}"
    );
    let out = d.run(&["kill", "7"], &[]);
    assert!(
        !out.success() && out.stderr.contains("unknown worker '7'"),
        "{out:?}"
    );

    d.ok(
        &["restart", "2"],
        &[("SIMULATION_DELAY_MS", "99"), ("QUEUE_PREFIX", "elsewhere")],
    );
    assert!(d.alive("worker-2"));
    d.wait_log("worker-2", "delay=2 metrics=unset db=unset prefix=unset", 2);
    assert_eq!(
        d.log("worker-2").matches("starting worker-2").count(),
        2,
        "log appended to"
    );
    d.ok(&["restart", "1"], &[]);
    assert!(d.pid("worker-1") != Some(p1) && gone(p1) && d.alive("worker-1"));

    assert_eq!(
        d.ok(&["cli", "metadata", "abc"], &[]).stdout,
        "cli metadata abc\n"
    );
    let logs = d.ok(&["logs"], &[("FOLLOW", "0")]).stdout;
    assert!(
        logs.lines()
            .any(|l| l.starts_with("[worker-2] aggregator up")),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l.starts_with("[runner] submit")),
        "{logs}"
    );

    let pids: Vec<u32> = ["worker-1", "worker-2", "worker-3"]
        .map(|s| d.pid(s).unwrap())
        .to_vec();
    d.ok(&["down"], &[]);
    assert!(d.run_dir_is_empty(), "down removed the files");
    assert!(pids.into_iter().all(gone));
    assert!(
        d.log("worker-2").contains("aggregator stopped"),
        "drained on SIGTERM"
    );
    assert!(d.ok(&["ps"], &[]).stdout.starts_with("nothing started"));
}

#[test]
fn executors_are_replicas_with_their_own_metrics_ports() {
    let d = Drill::new();
    let env = [
        ("EXECUTORS", "3"),
        ("METRICS_ADDR", "127.0.0.1:9500"),
        ("RUNNER", "0"),
    ];
    d.ok(&["up-detached"], &env);
    for k in 1..=3 {
        assert!(d.alive(&format!("worker-1-{k}")));
    }
    assert_eq!(
        d.pid("worker-1"),
        None,
        "no plain worker-1 with EXECUTORS=3"
    );
    for (name, port) in [
        ("worker-1-1", 9500),
        ("worker-1-2", 9510),
        ("worker-2", 9501),
        ("worker-3", 9502),
    ] {
        d.wait_log(name, &format!("metrics=127.0.0.1:{port} "), 1);
    }
    let p12 = d.pid("worker-1-2").unwrap();
    d.ok(&["kill", "1-2"], &env);
    assert!(gone(p12) && d.alive("worker-1-1") && d.alive("worker-1-3"));
    d.ok(&["kill", "1"], &env);
    assert!(d.pid("worker-1-1").is_none() && d.pid("worker-1-3").is_none());
    assert!(d.alive("worker-2"), "worker-2 survived kill 1");
    d.ok(&["restart", "1"], &env);
    for k in 1..=3 {
        assert!(d.alive(&format!("worker-1-{k}")), "worker-1-{k} runs again");
    }
    d.ok(&["down"], &env);
}

#[test]
fn aggregators_are_replicas_killed_and_restarted_one_by_one() {
    let d = Drill::new();
    let env = [
        ("AGGREGATORS", "2"),
        ("METRICS_ADDR", "127.0.0.1:9600"),
        ("RUNNER", "0"),
    ];
    d.ok(&["up-detached"], &env);
    assert_eq!(
        d.pid("worker-2"),
        None,
        "no plain worker-2 with AGGREGATORS=2"
    );
    for (name, port) in [("worker-2-1", 9601), ("worker-2-2", 9619)] {
        d.wait_log(name, "aggregator up", 1);
        d.wait_log(name, &format!("metrics=127.0.0.1:{port} "), 1);
    }
    let p22 = d.pid("worker-2-2").unwrap();
    d.ok(&["kill", "2-2"], &env);
    assert!(gone(p22) && d.alive("worker-2-1") && d.alive("worker-1"));
    d.ok(&["restart", "2-2"], &env);
    assert!(d.alive("worker-2-2"), "worker-2-2 runs again");
    let out = d.run(&["kill", "2-3"], &env);
    assert!(!out.success(), "no worker-2-3 with AGGREGATORS=2: {out:?}");
    d.ok(&["down"], &env);
}

#[test]
fn down_sends_sigkill_after_stop_timeout() {
    let d = Drill::new();
    d.knobs("FAKE_DRAIN=30\n");
    d.ok(&["up-detached"], &[("RUNNER", "0")]);
    d.wait_log("worker-2", "aggregator up", 1);
    let pids: Vec<u32> = ["worker-1", "worker-2", "worker-3"]
        .map(|s| d.pid(s).unwrap())
        .to_vec();
    let out = d.ok(&["down"], &[("STOP_TIMEOUT", "1")]);
    assert!(
        out.stderr.contains("still runs after 1s: SIGKILL"),
        "{out:?}"
    );
    assert!(
        !d.log("worker-2").contains("aggregator stopped"),
        "the SIGKILL cut the drain short"
    );
    assert!(pids.into_iter().all(gone));
}

#[test]
fn dotenv_fills_in_but_never_overrides_the_environment() {
    let d = Drill::new();
    std::fs::write(
        d.dir.path().join(".env"),
        "# a comment\n\
         DATABASE_URL=postgres://from-dotenv/db\n\
         QUEUE_PREFIX=\"from_dotenv\"   \n\
         DB_SCHEMA=\n\
         SIMULATION_DELAY_MS=7 # an inline comment\n",
    )
    .unwrap();
    d.ok(
        &["up-detached"],
        &[("QUEUE_PREFIX", "from_env"), ("RUNNER", "0")],
    );
    d.wait_log("worker-3", "verifier up", 1);
    let line = d.log("worker-3");
    assert!(line.contains("db=postgres://from-dotenv/db "), "{line}");
    assert!(
        line.contains("prefix=from_env "),
        ".env does not override the environment: {line}"
    );
    assert!(
        line.contains("schema=unset"),
        "an empty variable is unset, not passed on empty: {line}"
    );
    assert!(
        d.log("worker-1").contains("delay=7 "),
        "inline comments are not part of the value"
    );
    // .env's WORKER_DATA_DIR counts too, for every command.
    std::fs::write(d.dir.path().join(".env"), "WORKER_DATA_DIR=elsewhere\n").unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_batchline"));
    let mut env = d.env(&[]);
    env.remove("WORKER_DATA_DIR");
    let out = run_once_in(
        Some(d.dir.path()),
        bin,
        &["stack", "data-dir"],
        &env,
        PATIENCE,
    )
    .unwrap();
    assert_eq!(
        PathBuf::from(out.stdout.trim()),
        d.dir.path().canonicalize().unwrap().join("elsewhere")
    );
    d.ok(&["down"], &[]);
}

#[test]
fn a_reused_pid_is_not_taken_for_a_service() {
    let d = Drill::new();
    d.ok(&["up-detached"], &[("RUNNER", "0")]);
    d.ok(&["kill", "2"], &[]);
    // Another process now holds the pid worker-2's file names.
    let mut stranger = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(
        d.data().join("run").join("worker-2.pid"),
        format!("{}\n", stranger.id()),
    )
    .unwrap();
    let ps = d.ok(&["ps"], &[]).stdout;
    assert!(
        ps.lines()
            .any(|l| l.starts_with("worker-2") && l.contains("stopped")),
        "{ps}"
    );
    let out = d.run(&["kill", "2"], &[]);
    assert!(
        !out.success() && out.stderr.contains("worker-2 is not running"),
        "{out:?}"
    );
    d.ok(&["down"], &[]);
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was left alone"
    );
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn services_that_cannot_start_say_why() {
    let d = Drill::new();
    d.knobs("FAKE_EXIT=aggregator\n");
    let out = d.run(&["up-detached"], &[("RUNNER", "0")]);
    assert!(!out.success(), "{out:?}");
    assert!(
        out.stderr.contains("worker-2 exited right after starting"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("    aggregator: bad configuration"),
        "the end of its log: {out:?}"
    );
    assert!(
        out.stderr
            .contains("some services did not start (make down stops the others)")
    );
    d.ok(&["down"], &[]);

    d.knobs("FAKE_MIGRATE_FAILS=1\n");
    let out = d.run(&["up-detached"], &[]);
    assert!(!out.success(), "{out:?}");
    assert!(out.stderr.contains("'batchline migrate' failed"), "{out:?}");
    assert!(
        out.stderr.contains("cannot connect to Postgres"),
        "the end of migrate.log: {out:?}"
    );
    assert!(
        d.pid("worker-1").is_none(),
        "no service starts without migrations"
    );
}

#[test]
fn up_follows_the_logs_and_stops_everything_on_ctrl_c() {
    let d = Drill::new();
    let out_path = d.dir.path().join("up.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_batchline"));
    cmd.args(["stack", "up"])
        .current_dir(d.dir.path())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, v) in d.env(&[("RUNNER", "0")]).iter() {
        cmd.env(k, v);
    }
    // A group of its own, as a terminal's foreground job: Ctrl-C is a SIGINT to it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut up = cmd.spawn().unwrap();
    let text = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let start = Instant::now();
    while !(text().contains("following the logs") && text().contains("[worker-2] aggregator up")) {
        assert!(start.elapsed() < PATIENCE, "up did not start:\n{}", text());
        std::thread::sleep(Duration::from_millis(50));
    }
    launcher::signal::send("up", up.id(), Signal::SIGINT).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "up did not stop after Ctrl-C:\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = text();
    assert!(status.success(), "{status}:\n{text}");
    for stage in ["executor", "aggregator", "verifier"] {
        assert!(
            text.contains(&format!("{stage} got SIGTERM")),
            "{stage} got SIGTERM, not the SIGINT:\n{text}"
        );
    }
    assert!(
        text.contains("[worker-2] aggregator stopped"),
        "up showed the shutdown lines:\n{text}"
    );
    assert!(text.contains("[stack] stopped"), "{text}");
    assert!(d.run_dir_is_empty(), "nothing runs after Ctrl-C");
}
