//! Prints everything one Spring League run produced (or of `--event FILE`):
//! `cargo run -p workload --example run_detail -- [SEED] [RUN] [EVENT.json]`.

use std::path::Path;

use workload::{Workload, WorkloadSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = args.first().map_or(Ok(1), |s| s.parse())?;
    let run = args.get(1).map_or(Ok(0), |s| s.parse())?;
    let spec = match args.get(2) {
        Some(path) => WorkloadSpec::from_event_file(Path::new(path))?,
        None => WorkloadSpec::bingo_default(),
    };
    let w = Workload::new(&spec)?;
    let detail = w
        .run_detail(seed, run, &mut w.scratch())
        .ok_or("not a bingo workload")?;
    println!("{}", serde_json::to_string_pretty(&detail)?);
    Ok(())
}
