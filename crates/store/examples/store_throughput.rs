//! Measures a store's hot path: claims per second,
//! `complete_chunk` rows per second (COPY inside the completing transaction)
//! and `scan_runs` rows per second (what the verifier reads).
//!
//! `cargo run --release -p store --example store_throughput [pg|sqlite] [RUNS] [WIDTH]`
//! (default: pg, 500,000 runs of width 7, in chunks of 1,000 and 10,000).
//! Postgres: `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) in a scratch schema that is
//! dropped at the end; SQLite: a file in a temp dir.

use std::time::{Duration, Instant};

use store::{Claim, Completion, NewBatch, PgStore, RunRows, SqliteStore, Store, Uuid};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), AnyError> {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "pg".into());
    let runs: i64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(500_000);
    let width: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(7);
    if backend == "sqlite" {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(dir.path().join("bench.db")).await?;
        store.migrate().await?;
        println!("sqlite");
        return run(&store, runs, width).await;
    }
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("store_bench_{}", Uuid::new_v4().simple());
    let store = PgStore::connect_with_schema(&url, &schema).await?;
    store.migrate().await?;

    println!("postgres");
    let result = run(&store, runs, width).await;
    store.drop_schema().await?;
    result
}

async fn run<S: Store>(store: &S, runs: i64, width: usize) -> Result<(), AnyError> {
    println!("runs={runs} width={width}");
    for chunk_size in [1_000, 10_000] {
        for tasks in [1usize, 4] {
            measure(store, runs, width, chunk_size, tasks).await?;
        }
    }
    Ok(())
}

/// Claims every chunk of a fresh batch, then completes them all, with
/// `tasks` concurrent workers each taking every `tasks`-th chunk.
async fn measure<S: Store>(
    store: &S,
    runs: i64,
    width: usize,
    chunk_size: i32,
    tasks: usize,
) -> Result<(), AnyError> {
    let new = NewBatch {
        id: Uuid::new_v4(),
        name: format!("bench-{chunk_size}-{tasks}"),
        share: Default::default(),
        workload: "{}".into(),
        seed: 1,
        runs,
        chunk_size,
    };
    let chunks = new.chunks();
    store.create_batches(std::slice::from_ref(&new)).await?;
    let batch = store.batch(new.id).await?.ok_or("batch vanished")?;

    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            for chunk in (t as i32..chunks).step_by(tasks) {
                match store
                    .claim_chunk(new.id, chunk, "bench", Duration::from_secs(600), 5)
                    .await?
                {
                    Claim::Claimed { attempt } => attempts.push((chunk, attempt)),
                    other => return Err(format!("chunk {chunk}: {other:?}").into()),
                }
            }
            Ok::<_, AnyError>(attempts)
        }));
    }
    let mut claimed = Vec::new();
    for h in handles {
        claimed.push(h.await??);
    }
    let claim_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut handles = Vec::new();
    for attempts in claimed {
        let store = store.clone();
        let batch = batch.clone();
        handles.push(tokio::spawn(async move {
            let mut busy = Duration::ZERO;
            for (chunk, attempt) in attempts {
                let rows = rows_for(&batch, chunk, width);
                let t0 = Instant::now();
                let done = store
                    .complete_chunk(batch.id, chunk, attempt, &rows, "{}")
                    .await?;
                busy += t0.elapsed();
                if done != Completion::Committed {
                    return Err(format!("chunk {chunk} fenced").into());
                }
            }
            Ok::<_, AnyError>(busy)
        }));
    }
    let mut busy = Duration::ZERO;
    for h in handles {
        busy += h.await??;
    }
    let complete_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut stored = 0i64;
    store.scan_runs(new.id, 0..runs, |_, _| stored += 1).await?;
    let scan_s = started.elapsed().as_secs_f64();
    if stored != runs {
        return Err(format!("stored {stored} rows, expected {runs}").into());
    }
    println!(
        "chunk_size={chunk_size:>6} tasks={tasks}: claims {:>8.0}/s ({chunks} in {claim_s:.2}s) | \
         complete_chunk {:>9.0} rows/s, {:>6.1} ms/chunk ({runs} rows in {complete_s:.2}s) | \
         scan_runs {:>9.0} rows/s",
        f64::from(chunks) / claim_s,
        runs as f64 / complete_s,
        busy.as_secs_f64() * 1e3 / f64::from(chunks),
        runs as f64 / scan_s,
    );
    Ok(())
}

fn rows_for(batch: &store::Batch, chunk: i32, width: usize) -> RunRows {
    let (first_run, n) = batch.chunk_range(chunk);
    let values = (first_run..first_run + n)
        .flat_map(|run| (0..width).map(move |k| ((run * 7 + k as i64) % 100) as i32))
        .collect();
    RunRows {
        first_run,
        width,
        values,
    }
}
