//! `batchline purge`: one line per batch considered, then a summary;
//! exit 1 when a batch was refused (running, no `--force`) or unknown.

use std::process::ExitCode;

use pipeline::retention::{self, Options, Purged, Target};
use pipeline::status::{State, ellipsis};
use store::Purge;

use crate::cli::{Global, PurgeArgs};
use crate::connect;

pub async fn run(g: &Global, args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    let target = match args.older_than {
        Some(age) => Target::OlderThan(age),
        None => Target::Batches(args.batches.clone()),
    };
    let options = Options {
        force: args.force,
        dry_run: args.dry_run,
    };
    // Only a forced purge tells an aggregator anything (a batch purged
    // while it ran); without RabbitMQ it still purges, and the aggregator
    // drops that state at its next look.
    let broker = if args.force && !args.dry_run {
        match connect::broker(g, &store).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!("{e:#}; purging without telling the aggregator");
                None
            }
        }
    } else {
        None
    };
    let done = retention::purge(&store, broker.as_ref(), &target, options).await?;
    let mut failed = false;
    let (mut purged, mut runs) = (0u64, 0i64);
    for p in &done {
        println!("{}", line(p, args.dry_run));
        match p.outcome {
            Purge::Purged => {
                purged += 1;
                runs += p.batch.as_ref().map_or(0, |b| b.runs);
            }
            Purge::Running | Purge::Unknown => failed = true,
            Purge::AlreadyPurged => {}
        }
    }
    let verb = if args.dry_run {
        "would purge"
    } else {
        "purged"
    };
    println!("{verb} {purged} batch(es), {runs} runs");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn line(p: &Purged, dry_run: bool) -> String {
    let about = match &p.batch {
        Some(b) => {
            let verdict = match State::of(b) {
                s if s.is_final() || s == State::Cancelling => s.as_str(),
                _ => "running",
            };
            format!(" [{}] runs={} {verdict}", ellipsis(&b.name, 40), b.runs)
        }
        None => String::new(),
    };
    let id = p.id;
    match p.outcome {
        Purge::Purged if dry_run => format!("would purge {id}{about}"),
        Purge::Purged => format!("purged {id}{about}"),
        Purge::AlreadyPurged => format!("already purged {id}"),
        Purge::Running => {
            format!("refused {id}{about}: no verdict yet; --force purges it anyway")
        }
        Purge::Unknown => format!("unknown batch {id}"),
    }
}
