//! Secrets: a value that never prints, and the `_FILE` convention of the
//! official Postgres and RabbitMQ images (Docker and Kubernetes mount
//! secrets as files). One place for every option that takes a secret: the
//! service URLs and the RabbitMQ password (the binary), the web console's
//! token.
//!
//! A file's content is the secret without its trailing line break; an
//! unreadable, non-UTF-8 or empty file is an error naming the variable and
//! the path, never the content.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

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

/// For clap: an option whose value is a secret.
impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Why a secret file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read {var} {}", path.display())]
    Unreadable {
        var: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{var} {} is not UTF-8 text", path.display())]
    NotText { var: String, path: PathBuf },
    #[error("{var} {} is empty", path.display())]
    Empty { var: String, path: PathBuf },
}

/// Reads the secret file named by the variable `var` (for the error text).
pub fn read_file(var: &str, path: &Path) -> Result<Secret, SecretFileError> {
    let bytes = std::fs::read(path).map_err(|source| SecretFileError::Unreadable {
        var: var.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretFileError::NotText {
        var: var.to_owned(),
        path: path.to_owned(),
    })?;
    // Editors and `echo` end files with a line break that is not part of the secret.
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(SecretFileError::Empty {
            var: var.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(value))
}

/// The value of an option that can be given directly (`var`) or as a file
/// (`var_FILE`): the file's content when a file is given, else `value`.
pub fn resolve(
    var: &str,
    value: Option<Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, SecretFileError> {
    match file {
        Some(path) => read_file(&format!("{var}_FILE"), path).map(Some),
        None => Ok(value),
    }
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
    fn an_empty_or_missing_file_is_an_error_naming_it() {
        let file = file_with(b"\n");
        let error = read_file("WEB_TOKEN_FILE", file.path()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("WEB_TOKEN_FILE") && text.contains("is empty"),
            "{text}"
        );
        let error = read_file("DATABASE_URL_FILE", Path::new("/nonexistent/db-url")).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("DATABASE_URL_FILE /nonexistent/db-url"),
            "{error}"
        );
    }

    #[test]
    fn the_file_wins_over_the_value() {
        let file = file_with(b"from-file\n");
        let env = Some(Secret::new("from-env"));
        let got = resolve("WEB_TOKEN", env.clone(), Some(file.path())).unwrap();
        assert_eq!(got.unwrap().expose(), "from-file");
        let got = resolve("WEB_TOKEN", env, None).unwrap();
        assert_eq!(got.unwrap().expose(), "from-env");
        assert!(resolve("WEB_TOKEN", None, None).unwrap().is_none());
    }

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
    }
}
