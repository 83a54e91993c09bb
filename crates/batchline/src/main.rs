//! batchline: the binary. It parses the command line, sets up logging and
//! metrics, connects the broker and store, and calls one library function
//! per subcommand. It holds no pipeline logic.
//!
//! Layout:
//! - `cli`: the commands and the global options (each also an
//!   environment variable; `.env.example` lists them all);
//! - `connect`: the store and broker from the options (migrations, the
//!   partition count, RabbitMQ's version check); `tls`, `secrets`: TLS
//!   material and `*_FILE` secrets checked before connecting;
//! - `services`: the long-running stages and the demo; `shutdown`:
//!   SIGTERM / Ctrl-C; `observe`, `probes`: logs, `/metrics`, `/healthz`,
//!   `/readyz`;
//! - `submit_cmd`, `purge_cmd`, `cancel_cmd`, `inspect` (`status`,
//!   `queue`, `results`, `partitions`), `metadata` (the aggregator's CSV
//!   state), `web_cmd`: the other subcommands.

mod cancel_cmd;
mod cli;
mod connect;
mod inspect;
mod metadata;
mod observe;
mod probes;
mod purge_cmd;
mod secrets;
mod services;
mod shutdown;
mod submit_cmd;
mod tls;
mod web_cmd;

use std::process::ExitCode;

use clap::CommandFactory;
use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_env_aware();
    // The demo tells its own story on stdout; its stages' logs only when asked.
    let quiet = matches!(&cli.command, Command::Demo(d) if !d.verbose);
    observe::init_tracing(cli.global.log_format, quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    secrets::apply(&mut cli.global)?;
    let g = &cli.global;
    match &cli.command {
        Command::Demo(args) => services::demo(g, args).await,
        Command::Migrate => {
            connect::store(g).await?;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit(args) => submit_cmd::run(g, args).await,
        Command::Executor(args) => services::executor(g, args).await,
        Command::Aggregator(args) => services::aggregator(g, args).await,
        Command::Verifier(args) => services::verifier(g, args).await,
        Command::Status(args) => inspect::status(g, args).await,
        Command::Queue(args) => inspect::queue(g, args).await,
        Command::Results(args) => inspect::results(g, args).await,
        Command::Metadata(args) => inspect::metadata(g, args),
        Command::Partitions(args) => inspect::partitions(g, args).await,
        Command::Purge(args) => purge_cmd::run(g, args).await,
        Command::Cancel(args) => cancel_cmd::run(g, args).await,
        Command::Bench(args) => Ok(bench::run(connect::services(g)?, &g.worker_data_dir, args)
            .await
            .map(|()| ExitCode::SUCCESS)?),
        Command::Stack(args) => Ok(tokio::task::block_in_place(|| {
            launcher::drill::run(args, &Cli::command(), &g.worker_data_dir, g.metrics_addr)
        })),
        Command::Web(args) => web_cmd::run(g, args).await,
    }
}
