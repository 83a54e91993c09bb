//! Secrets handed over as files, the `_FILE` convention of the official
//! Postgres and RabbitMQ images (Docker and Kubernetes mount secrets as
//! files): `DATABASE_URL_FILE`, `RABBITMQ_URL_FILE` and `RABBITMQ_PASS_FILE`
//! (the web console's `WEB_TOKEN_FILE` uses the same [`pipeline::secret`]).
//! A file, when given, wins over the plain variable.

use std::path::PathBuf;

use broker::RabbitConfig;
use clap::Args;
use pipeline::secret::{read_file, resolve};

use crate::cli::Global;

/// The service secrets that may come from files.
#[derive(Debug, Args)]
pub struct SecretFiles {
    /// File holding the Postgres URL (a mounted secret); wins over DATABASE_URL.
    #[arg(long, global = true, env = "DATABASE_URL_FILE", value_name = "PATH")]
    pub database_url_file: Option<PathBuf>,
    /// File holding the RabbitMQ URL (a mounted secret); wins over RABBITMQ_URL.
    #[arg(long, global = true, env = "RABBITMQ_URL_FILE", value_name = "PATH")]
    pub rabbitmq_url_file: Option<PathBuf>,
    /// File holding the RabbitMQ password; wins over RABBITMQ_PASS (used when
    /// no RabbitMQ URL is given, with RABBITMQ_HOST/PORT/USER).
    #[arg(long, global = true, env = "RABBITMQ_PASS_FILE", value_name = "PATH")]
    pub rabbitmq_pass_file: Option<PathBuf>,
}

/// Reads the service secret files into `global`, so every command (and the
/// processes the bench spawns) sees the URLs it connects with in
/// `database_url` and `rabbitmq_url`.
pub fn apply(global: &mut Global) -> anyhow::Result<()> {
    let files = &global.secret_files;
    if let Some(url) = resolve("DATABASE_URL", None, files.database_url_file.as_deref())? {
        global.database_url = url.into_inner();
    }
    if let Some(url) = resolve("RABBITMQ_URL", None, files.rabbitmq_url_file.as_deref())? {
        global.rabbitmq_url = Some(url.into_inner());
    } else if global.rabbitmq_url.is_none()
        && let Some(path) = &files.rabbitmq_pass_file
    {
        let pass = read_file("RABBITMQ_PASS_FILE", path)?;
        let config = RabbitConfig::from_lookup(|key| match key {
            "RABBITMQ_PASS" => Some(pass.expose().to_owned()),
            _ => std::env::var(key).ok(),
        });
        global.rabbitmq_url = Some(config.url);
    }
    Ok(())
}
