//! `.env` for the drill's commands: its variables count as if they were in
//! the environment, but never override one that is (Docker Compose reads
//! it the same way). The command re-executes itself with them added, so
//! every setting, its own and its services', is parsed once, by clap, from
//! one environment.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The variables `path` sets that `has` says the environment lacks, with
/// warnings for the lines that cannot be read. Empty values are left out:
/// an empty variable means "the default" here.
pub fn additions(
    path: &Path,
    has: impl Fn(&str) -> bool,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut add = BTreeMap::new();
    let mut warnings = Vec::new();
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(e) if e.not_found() => return Ok((add, warnings)),
        Err(source) => {
            return Err(Error::EnvFile {
                path: path.to_owned(),
                source,
            });
        }
    };
    for item in iter {
        match item {
            // The first occurrence wins, as when dotenvy loads a file.
            Ok((k, v)) => {
                if !has(&k) && !v.is_empty() {
                    add.entry(k).or_insert(v);
                }
            }
            Err(dotenvy::Error::LineParse(line, _)) => {
                warnings.push(format!("{}: ignoring the line '{line}'", path.display()));
            }
            Err(source) => {
                return Err(Error::EnvFile {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    Ok((add, warnings))
}

/// Re-executes this process with `path`'s additions in its environment;
/// returns (having done nothing) when there are none.
pub fn reexec_with(path: &Path, warn: impl Fn(&str)) -> Result<()> {
    let (add, warnings) = additions(path, |k| std::env::var_os(k).is_some())?;
    for w in &warnings {
        warn(w);
    }
    if add.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(Error::io("cannot find", "this binary"))?;
    let source = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .envs(add)
        .exec();
    Err(Error::Spawn {
        bin: exe,
        args: "(itself, with .env)".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_adds_only_what_the_environment_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# a comment\n\
             DATABASE_URL=postgres://from-dotenv/db\n\
             QUEUE_PREFIX=\"from_dotenv\"   \n\
             DB_SCHEMA=\n\
             SIMULATION_DELAY_MS=7 # an inline comment\n\
             export EXECUTORS=2\n\
             not a line\n\
             EXECUTORS=5\n",
        )
        .unwrap();
        let (add, warnings) = additions(&path, |k| k == "QUEUE_PREFIX").unwrap();
        let got: Vec<(&str, &str)> = add.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("DATABASE_URL", "postgres://from-dotenv/db"),
                ("EXECUTORS", "2"),
                ("SIMULATION_DELAY_MS", "7"),
            ]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("not a line"), "{warnings:?}");
        let (none, _) = additions(&dir.path().join("absent"), |_| false).unwrap();
        assert!(none.is_empty());
    }
}
