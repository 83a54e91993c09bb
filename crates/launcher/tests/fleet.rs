//! The fleet against a fake binary (a shell script), so these need no
//! services and no build: environment, logs, stdout lines, signals,
//! restarts, readiness, stopping, one-shot runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use launcher::{Env, Error, Fleet, Signal, run_once};

const PATIENCE: Duration = Duration::from_secs(30);

const FAKE: &str = r#"#!/usr/bin/env bash
# fake binary: `serve` runs until SIGTERM (then drains $DRAIN s); the others exit.
case $1 in
serve)
  trap 'echo "got SIGTERM" >&2; sleep "${DRAIN:-0}"; echo "drained" >&2; exit 0' TERM
  echo "ready pid=$$ pgid=$(ps -o pgid= -p $$ | tr -d ' ') mark=${MARK-unset} leak=${CARGO_MANIFEST_DIR-unset}" >&2
  for i in $(seq 1 "${LINES:-0}"); do echo "line $i"; done
  sleep "${HOLD:-0}"
  echo "after hold"
  while :; do sleep 0.1 & wait $!; done
  ;;
print) echo "out $2"; echo "err $2" >&2; exit "${CODE:-0}" ;;
hang) sleep 30 ;;
exit) echo "leaving" >&2; exit 3 ;;
esac
"#;

struct Fixture {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("batchline");
    std::fs::write(&bin, FAKE).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Fixture { dir, bin }
}

impl Fixture {
    fn fleet(&self, env: &[(&str, &str)]) -> Fleet {
        let env = Env::clean_base().with(&Env::from_pairs(env));
        Fleet::new(&self.bin, &self.dir.path().join("logs"), env)
            .unwrap()
            .in_dir(self.dir.path())
    }
}

fn log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs)
}

#[test]
fn a_child_gets_exactly_its_env_its_own_group_and_a_log() {
    let f = fixture();
    let mut fleet = f.fleet(&[("MARK", "stack")]);
    fleet
        .spawn("a", &["serve"], &env(&[("LINES", "2")]))
        .unwrap();
    let p = fleet.get_mut("a").unwrap();
    p.wait_log_line("ready", PATIENCE).unwrap();
    let text = log(p.log());
    let pid = p.pid();
    assert!(text.contains(&format!("pid={pid} pgid={pid} ")), "{text}");
    assert!(text.contains("mark=stack leak=unset"), "{text}");
    assert!(
        text.contains("starting a (start #1): batchline serve"),
        "{text}"
    );
    assert!(p.peak_rss_mb().unwrap() > 0.0);
    assert_eq!(p.role(), "serve");
    let mut polls = 0;
    while fleet.lines().len() < 2 {
        polls += 1;
        assert!(polls < 1000, "stdout lines never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fleet.lines()[..2], ["line 1", "line 2"]);
    let copy = log(fleet.lines_file());
    assert!(copy.contains("a#1: line 1\na#1: line 2\n"), "{copy}");
}

#[test]
fn restart_keeps_the_env_and_appends_the_log() {
    let f = fixture();
    let mut fleet = f.fleet(&[]);
    fleet
        .spawn("a", &["serve"], &env(&[("MARK", "first")]))
        .unwrap();
    assert!(matches!(
        fleet.spawn("a", &["serve"], &Env::new()),
        Err(Error::AlreadyRunning(_))
    ));
    let p = fleet.get_mut("a").unwrap();
    p.wait_log_line("mark=first", PATIENCE).unwrap();
    let first = p.pid();
    fleet.restart("a").unwrap();
    let p = fleet.get_mut("a").unwrap();
    assert_ne!(p.pid(), first);
    assert_eq!(p.starts(), 2);
    p.wait_log_line("(start #2)", PATIENCE).unwrap();
    let mut polls = 0;
    while log(p.log()).matches("mark=first").count() < 2 {
        polls += 1;
        assert!(
            polls < 1000,
            "the restarted process never said it was ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    fleet.restart_with("a", &Env::new()).unwrap();
    let p = fleet.get_mut("a").unwrap();
    assert_eq!(
        p.spec().env.get("MARK"),
        None,
        "restart_with drops the old extra env"
    );
    assert!(matches!(fleet.kill("nope"), Err(Error::NoSuchProcess(_))));
}

#[test]
fn the_nth_stdout_line_can_kill_the_child_before_it_prints_more() {
    let f = fixture();
    let mut fleet = f.fleet(&[]);
    fleet
        .spawn_killed_after_lines("v", &["serve"], &env(&[("LINES", "2"), ("HOLD", "30")]), 2)
        .unwrap();
    let status = fleet
        .get_mut("v")
        .unwrap()
        .wait_exit(PATIENCE)
        .unwrap()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "SIGKILLed: {status}");
    assert_eq!(fleet.lines(), ["line 1", "line 2"]);
    assert_eq!(fleet.dead(), ["v"]);
    assert_eq!(fleet.exited().len(), 1);
}

#[test]
fn stop_and_continue_and_kill_reach_the_child() {
    let f = fixture();
    let mut fleet = f.fleet(&[]);
    fleet.spawn("a", &["serve"], &Env::new()).unwrap();
    let pid = fleet.get("a").unwrap().pid();
    let state = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        stat[stat.rfind(')').unwrap() + 2..].chars().next().unwrap()
    };
    fleet.signal("a", Signal::SIGSTOP).unwrap();
    let mut polls = 0;
    while state() != 'T' {
        polls += 1;
        assert!(polls < 1000, "SIGSTOP did not stop it");
        std::thread::sleep(Duration::from_millis(10));
    }
    fleet.signal("a", Signal::SIGCONT).unwrap();
    while state() == 'T' {
        polls += 1;
        assert!(polls < 2000, "SIGCONT did not resume it");
        std::thread::sleep(Duration::from_millis(10));
    }
    fleet.kill("a").unwrap();
    assert!(!fleet.get_mut("a").unwrap().is_alive());
    // A reaped child is never signalled again (its pid may be reused).
    fleet.signal("a", Signal::SIGKILL).unwrap();
}

#[test]
fn readiness_fails_with_the_log_when_the_child_exits() {
    let f = fixture();
    let mut fleet = f.fleet(&[]);
    fleet.spawn("gone", &["exit"], &Env::new()).unwrap();
    let err = fleet
        .get_mut("gone")
        .unwrap()
        .wait_log_line("never", PATIENCE)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gone exited (exit status: 3) before it was ready"),
        "{err}"
    );
    assert!(
        err.contains("leaving"),
        "the log's end is in the error: {err}"
    );
}

#[test]
fn stop_all_drains_on_sigterm_and_kills_after_the_grace_period() {
    let f = fixture();
    let mut fleet = f.fleet(&[]);
    fleet.spawn("quick", &["serve"], &Env::new()).unwrap();
    fleet
        .spawn("slow", &["serve"], &env(&[("DRAIN", "30")]))
        .unwrap();
    for name in ["quick", "slow"] {
        fleet
            .get_mut(name)
            .unwrap()
            .wait_log_line("ready", PATIENCE)
            .unwrap();
    }
    let stopped = fleet.stop_all(Duration::from_secs(1));
    let quick = stopped.iter().find(|s| s.name == "quick").unwrap();
    let slow = stopped.iter().find(|s| s.name == "slow").unwrap();
    assert!(quick.clean(), "{quick:?}");
    assert!(slow.killed && !slow.clean(), "{slow:?}");
    assert!(log(fleet.get("quick").unwrap().log()).contains("drained"));
    assert!(!log(fleet.get("slow").unwrap().log()).contains("drained"));
}

#[test]
fn one_shot_runs_capture_both_streams_and_time_out() {
    let f = fixture();
    let base = Env::clean_base();
    let out = run_once(&f.bin, &["print", "x"], &base, PATIENCE).unwrap();
    assert!(out.success());
    assert_eq!(
        (out.stdout.as_str(), out.stderr_lines()),
        ("out x\n", vec!["err x"])
    );
    let out = run_once(
        &f.bin,
        &["print", "y"],
        &base.with(&env(&[("CODE", "4")])),
        PATIENCE,
    )
    .unwrap();
    assert_eq!(out.code, Some(4));
    let err = run_once(&f.bin, &["hang"], &base, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}
