//! `batchline cancel`: one line per batch, exit 1 when a batch was unknown,
//! purged or already final; a batch cancelled before is said so, exit 0.

use std::process::ExitCode;

use store::Cancel;

use crate::cli::{CancelArgs, Global};
use crate::connect;

pub async fn run(g: &Global, args: &CancelArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    // The nudge only hurries the seal: without RabbitMQ the cancel still
    // holds, and the sweeper nudges the partition later.
    let broker = match connect::broker(g, &store).await {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!("{e:#}; cancelling without telling the aggregator (the sweeper will)");
            None
        }
    };
    let done =
        pipeline::cancel::cancel(&store, broker.as_ref(), &args.batches, &args.reason).await?;
    let mut failed = false;
    for (id, outcome) in &done {
        println!("{}", line(*id, outcome));
        failed |= !matches!(outcome, Cancel::Cancelled { .. } | Cancel::AlreadyCancelled);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn line(id: store::Uuid, outcome: &Cancel) -> String {
    match outcome {
        Cancel::Cancelled { chunks, completed } => format!(
            "cancelled {id}: {chunks} chunk(s) will not run, {completed} completed kept; \
             its verdict line will say CANCELLED"
        ),
        Cancel::AlreadyCancelled => format!("already cancelled {id}"),
        Cancel::Final { why } => format!("not cancelled {id}: the batch is final: {why}"),
        Cancel::Unknown => format!("unknown batch {id}"),
        Cancel::Purged => format!("not cancelled {id}: the batch was purged"),
    }
}
