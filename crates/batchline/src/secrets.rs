//! Secrets handed over as files, the `_FILE` convention of the official
//! Postgres and RabbitMQ images (Docker and Kubernetes mount secrets as
//! files): `DATABASE_URL_FILE`, `RABBITMQ_URL_FILE` and `RABBITMQ_PASS_FILE`
//! here, and [`resolve`] for any other option that takes a secret (the web
//! console's `WEB_TOKEN` / `WEB_TOKEN_FILE`).
//!
//! A file, when given, wins over the plain variable. Its content is the
//! secret without its trailing line break. An unreadable or empty file is a
//! one-line error naming the variable and the path, never the content; a
//! [`Secret`] prints as `***`.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use broker::RabbitConfig;
use clap::Args;

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

/// A secret value: shows as `***` in `Debug` and `Display`, so it cannot
/// reach a log line or a panic message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads the secret file named by the variable `var` (for the error text).
pub fn read_file(var: &str, path: &Path) -> anyhow::Result<Secret> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read {var} {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{var} {} is not UTF-8 text", path.display()))?;
    // Editors and `echo` end files with a line break that is not part of the secret.
    let value = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!value.is_empty(), "{var} {} is empty", path.display());
    Ok(Secret::new(value))
}

/// The value of an option that can be given directly (`var`) or as a file
/// (`var_FILE`): the file's content when a file is given, else `value`.
pub fn resolve(
    var: &str,
    value: Option<String>,
    file: Option<&Path>,
) -> anyhow::Result<Option<Secret>> {
    match file {
        Some(path) => read_file(&format!("{var}_FILE"), path).map(Some),
        None => Ok(value.map(Secret::new)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), content).unwrap();
        file
    }

    #[test]
    fn the_trailing_line_break_is_not_part_of_the_secret() {
        let file = file_with(b"s3cret\r\n\n");
        let secret = read_file("X_FILE", file.path()).unwrap();
        assert_eq!(secret.expose(), "s3cret");
        let file = file_with(b"  spaced  ");
        assert_eq!(
            read_file("X_FILE", file.path()).unwrap().expose(),
            "  spaced  "
        );
    }

    #[test]
    fn an_empty_or_missing_file_is_a_one_line_error_naming_it() {
        let file = file_with(b"\n");
        let error = format!(
            "{:#}",
            read_file("WEB_TOKEN_FILE", file.path()).unwrap_err()
        );
        assert!(
            error.contains("WEB_TOKEN_FILE") && error.contains("is empty"),
            "{error}"
        );

        let error = read_file("DATABASE_URL_FILE", Path::new("/nonexistent/db-url")).unwrap_err();
        let error = format!("{error:#}");
        assert!(
            error.contains("DATABASE_URL_FILE /nonexistent/db-url"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
    }

    #[test]
    fn the_file_wins_over_the_value() {
        let file = file_with(b"from-file\n");
        let got = resolve("WEB_TOKEN", Some("from-env".into()), Some(file.path())).unwrap();
        assert_eq!(got.unwrap().expose(), "from-file");
        let got = resolve("WEB_TOKEN", Some("from-env".into()), None).unwrap();
        assert_eq!(got.unwrap().expose(), "from-env");
        assert!(resolve("WEB_TOKEN", None, None).unwrap().is_none());
    }

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
    }
}
