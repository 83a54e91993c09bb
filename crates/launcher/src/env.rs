//! [`Env`]: the environment a child gets, on top of a clean base, and its
//! file form (`KEY=value` lines that `.env` readers and `dotenvy` parse
//! back) for services that are restarted from another process.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Variables every child inherits from the launching process: enough to
/// run, nothing that configures the pipeline, so knobs set in a
/// developer's shell (CRASH_POINTS, PREFETCH, …) never leak in.
const BASE: [&str; 4] = ["PATH", "HOME", "TMPDIR", "LANG"];

/// An ordered set of environment variables; setting a key again replaces it.
/// Its `Debug` shows the keys only: values may hold passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env(Vec<(String, String)>);

impl Env {
    pub fn new() -> Env {
        Env::default()
    }

    /// [`BASE`] as this process has it.
    pub fn clean_base() -> Env {
        Env::passthrough(&BASE)
    }

    /// `names` as this process has them (unset ones are left out).
    pub fn passthrough<S: AsRef<str>>(names: &[S]) -> Env {
        let mut env = Env::new();
        for name in names.iter().map(AsRef::as_ref) {
            if let Ok(value) = std::env::var(name) {
                env.set(name, value);
            }
        }
        env
    }

    /// From `(key, value)` pairs, later ones winning.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Env {
        let mut env = Env::new();
        for (k, v) in pairs {
            env.set(k.as_ref(), v.as_ref());
        }
        env
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Env {
        self.remove(key);
        self.0.push((key.to_owned(), value.into()));
        self
    }

    /// Sets `key` only when it is not set yet.
    pub fn set_default(&mut self, key: &str, value: impl Into<String>) -> &mut Env {
        if self.get(key).is_none() {
            self.set(key, value);
        }
        self
    }

    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `other` on top of this.
    pub fn extend(&mut self, other: &Env) -> &mut Env {
        for (k, v) in &other.0 {
            self.set(k, v.clone());
        }
        self
    }

    /// This with `other` on top.
    pub fn with(&self, other: &Env) -> Env {
        let mut env = self.clone();
        env.extend(other);
        env
    }

    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes `# comment` and one `KEY=value` line per variable, atomically
    /// (temp file, then rename) and readable by its owner only: values may
    /// hold passwords.
    pub fn write_file(&self, path: &Path, comment: &str) -> Result<()> {
        let tmp = tmp_path(path);
        let mut text = format!("# {comment}\n");
        for (k, v) in &self.0 {
            text.push_str(&format!("{k}={}\n", quote(v)));
        }
        let mut file = private_file(&tmp).map_err(Error::io("cannot create", &tmp))?;
        file.write_all(text.as_bytes())
            .map_err(Error::io("cannot write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(Error::io("cannot rename to", path))
    }

    /// Reads a file [`Env::write_file`] wrote (or any `.env`-style file).
    pub fn read_file(path: &Path) -> Result<Env> {
        let iter = dotenvy::from_path_iter(path).map_err(|source| Error::EnvFile {
            path: path.to_owned(),
            source,
        })?;
        let mut env = Env::new();
        for item in iter {
            let (k, v) = item.map_err(|source| Error::EnvFile {
                path: path.to_owned(),
                source,
            })?;
            env.set(&k, v);
        }
        Ok(env)
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl From<&[(String, String)]> for Env {
    fn from(pairs: &[(String, String)]) -> Env {
        Env::from_pairs(pairs)
    }
}

/// A value as `dotenvy` reads it back unchanged: bare when it holds only
/// characters with no meaning to it (and shell-friendly for scripts that
/// `sed` a line out), else single-quoted (no escapes, no `$` expansion),
/// else double-quoted with `\`, `"` and `$` escaped.
fn quote(value: &str) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-./:,@%+=".contains(c);
    if !value.is_empty() && value.chars().all(bare) {
        value.to_owned()
    } else if !value.contains('\'') && !value.contains('\n') {
        format!("'{value}'")
    } else {
        let mut out = String::from("\"");
        for c in value.chars() {
            match c {
                '\\' | '"' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' => out.push_str("\\n"),
                _ => out.push(c),
            }
        }
        out.push('"');
        out
    }
}

/// Every environment variable `cmd` and its subcommands read (clap's
/// `env = …`), hidden options included.
pub fn env_names(cmd: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    for sub in cmd.get_subcommands() {
        names.extend(env_names(sub));
    }
    names
}

/// `PATH.tmp`: where a file is written before it is renamed into place.
pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    name.into()
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_keeps_order() {
        let mut env = Env::from_pairs(&[("A", "1"), ("B", "2")]);
        env.set("A", "3");
        assert_eq!(env.get("A"), Some("3"));
        let keys: Vec<&str> = env.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["B", "A"]);
        env.set_default("B", "9").set_default("C", "4");
        assert_eq!((env.get("B"), env.get("C")), (Some("2"), Some("4")));
    }

    #[test]
    fn debug_shows_keys_not_values() {
        let env = Env::from_pairs(&[("DATABASE_URL", "postgres://u:s3cret@h/db")]);
        let shown = format!("{env:?}");
        assert!(shown.contains("DATABASE_URL") && !shown.contains("s3cret"));
    }

    #[test]
    fn the_file_form_reads_back_every_value_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.env");
        let values = [
            ("PLAIN", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("NUM", "3"),
            ("SPACE", "a b  c"),
            ("DOLLAR", "pa$$word ${HOME} $X"),
            ("QUOTE", "it's \"quoted\" \\ back"),
            ("HASH", "a #not a comment"),
            ("NEWLINE", "two\nlines"),
        ];
        let env = Env::from_pairs(&values);
        env.write_file(&path, "a test").unwrap();
        assert_eq!(Env::read_file(&path).unwrap(), env);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# a test\n"));
        assert!(
            text.contains("\nNUM=3\n"),
            "plain values stay sed-able: {text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
