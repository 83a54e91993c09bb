//! `batchline bench --quick` against the real RabbitMQ and Postgres
//! (`RABBITMQ_URL`, `DATABASE_URL`), so the benchmark never rots. It checks
//! that every headline key is there and positive, and that the pipeline's
//! aggregate equals the in-process one; it asserts no speed.
//!
//! `make test` runs a debug build, where a bingo run costs ~13× what it costs
//! in release, so the test asks for a fifth of `--quick`'s sizes on top
//! (`--runs 100000` → 10,000 runs per batch, chunks of 1,000).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn positive(json: &Value, key: &str) -> f64 {
    let v = json[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {}", json[key]));
    assert!(v > 0.0, "{key} = {v}");
    v
}

#[test]
fn quick_bench_writes_every_key() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("batchline-bench-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("results.json");
    let output = Command::new(env!("CARGO_BIN_EXE_batchline"))
        .args(["bench", "--quick"])
        .args(["--runs", "100000", "--rss-runs", "400000"])
        .args(["--drain-results", "20000"])
        .arg("--out")
        .arg(&out)
        .arg("--worker-data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "batchline bench --quick failed (are Postgres at DATABASE_URL and RabbitMQ at RABBITMQ_URL up?)\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("efficiency"),
        "no table on stdout:\n{stdout}"
    );

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for key in [
        "limit_runs_per_s",
        "limit_runs_per_s_1_thread",
        "e2e_runs_per_s",
        "efficiency",
        "e2e_1x1_runs_per_s",
        "e2e_2x1_runs_per_s",
        "scaling_1_to_2",
        "sum_runs_per_s",
        "aggregator_msgs_per_s",
        "aggregator_2_replicas_msgs_per_s",
        "e2e_3_aggregators_runs_per_s",
        "efficiency_3_aggregators",
        "aggregators_3_vs_1",
        "rebuild_from_store_s",
    ] {
        positive(&json, key);
    }
    assert_eq!(
        json["rebuild"]["merged"], 1_000,
        "the changelog merged whole"
    );
    positive(&json["recovery"], "no_kill_s");
    positive(&json["recovery"], "two_kills_s");
    assert_eq!(
        json["recovery"]["kills_at_s"].as_array().map(Vec::len),
        Some(2),
        "both kills fell before the verdict"
    );
    positive(&json, "cancel_to_line_p50_ms");
    positive(&json, "cancel_to_line_max_ms");
    let cancel = &json["cancel"];
    assert_eq!(cancel["cancels"], 5, "{cancel}");
    let runs_done = cancel["runs_done"].as_array().expect("runs_done");
    assert_eq!(runs_done.len(), 5, "one CANCELLED line per cancel");
    for done in runs_done {
        let done = done.as_i64().unwrap_or(-1);
        assert!((0..200_000).contains(&done), "runs_done {done}");
    }
    positive(&json, "fair_small_alone_s");
    positive(&json, "fair_small_shared_s");
    positive(&json, "fair_chunk_s");
    assert!(
        json["fair_small_goal_met"].is_boolean(),
        "fair_small_goal_met"
    );
    let fairness = &json["fairness"];
    for samples in ["equal_samples", "weights_samples"] {
        let n = fairness[samples].as_array().map_or(0, Vec::len);
        assert!(n > 0, "no {samples}: {fairness}");
    }
    assert_eq!(json["quick"], Value::Bool(true));
    assert_eq!(json["sizes"]["runs"], 10_000);
    assert_eq!(
        json["same_aggregate_as_limit"],
        Value::Bool(true),
        "the pipeline's aggregate differs from the in-process simulation of the same batch"
    );

    let rss = json["peak_rss_mb"].as_object().unwrap();
    assert_eq!(
        rss.keys().collect::<Vec<_>>(),
        ["10000", "40000"],
        "peak RSS at both sizes"
    );
    for (size, procs) in rss {
        for process in ["executor-1", "aggregator", "verifier"] {
            let mb = procs[process].as_f64().unwrap_or(0.0);
            assert!(mb > 0.0, "peak RSS of {process} at {size} runs: {mb}");
        }
    }

    let phases = &json["phases"];
    for scenario in [
        "e2e-bingo-all-cores",
        "e2e-bingo-all-cores-3-aggregators",
        "e2e-bingo-1x1",
        "e2e-bingo-2x1",
        "e2e-sum-all-cores",
    ] {
        for phase in ["claim", "simulate", "persist", "publish", "ack"] {
            let count = phases[scenario]["executor"][phase]["count"]
                .as_u64()
                .unwrap_or(0);
            assert!(count > 0, "{scenario}: executor phase {phase} missing");
        }
        let fsyncs = phases[scenario]["aggregator"]["fsync"]["count"]
            .as_u64()
            .unwrap_or(0);
        assert!(fsyncs > 0, "{scenario}: aggregator fsync phase missing");
    }
    for replicas in ["1x", "2x"] {
        assert!(
            phases[format!("aggregator-drain-{replicas}")]["aggregator"]["fsync"]["count"]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "aggregator-drain-{replicas}: fsync phase missing"
        );
    }
    let drains = json["aggregator"]
        .as_array()
        .expect("one drain per replica count");
    let replicas: Vec<u64> = drains
        .iter()
        .filter_map(|d| d["replicas"].as_u64())
        .collect();
    assert_eq!(replicas, [1, 2]);
    for drain in drains {
        assert_eq!(drain["results"], 2_000, "{drain}");
    }

    // Every scenario cleaned up its state directory; only the logs stay.
    let left: Vec<_> = std::fs::read_dir(dir.join("bench"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["logs"]);
    let _ = std::fs::remove_dir_all(&dir);
}
