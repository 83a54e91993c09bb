//! `.env.example` against the binary itself: every variable that
//! `batchline <command> --help` shows (`[env: NAME…]`, for every command
//! and subcommand) is listed there, with the default the help shows, and
//! every variable it lists is read by someone — the binary, or the Docker
//! files and scripts/stack.sh. No list of names is kept by hand here, so
//! the check follows the options as they change.
//!
//! `scripts/check-compose.py` checks docker-compose.yml and the Dockerfile
//! against `.env.example`; together they tie the compose file to the help.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One `[env: NAME]` of one command's help, with its `[default: …]`.
#[derive(Debug, Clone)]
struct EnvArg {
    command: String,
    default: Option<String>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `batchline ARGS --help`, in a clean environment so that the help shows
/// defaults, not this shell's values.
fn help(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_batchline"))
        .args(args)
        .arg("--help")
        .env_clear()
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "batchline {args:?} --help failed: {out:?}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help lists under `Commands:` (but `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// `NAME → every command that shows it`, over the whole command tree.
fn env_args() -> BTreeMap<String, Vec<EnvArg>> {
    let mut found: BTreeMap<String, Vec<EnvArg>> = BTreeMap::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&args);
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
        for (name, default) in parse_env(&text) {
            found.entry(name).or_default().push(EnvArg {
                command: format!("batchline {}", path.join(" ")).trim().to_owned(),
                default,
            });
        }
    }
    found
}

/// Every `[env: NAME=…] [default: VALUE]` of a help text.
fn parse_env(help: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for line in help.lines() {
        let Some(at) = line.find("[env: ") else {
            continue;
        };
        let rest = &line[at + 6..];
        let end = rest.find(['=', ']']).unwrap();
        let name = rest[..end].to_owned();
        let default = line
            .split_once("[default: ")
            .map(|(_, d)| d[..d.find(']').unwrap()].to_owned());
        out.push((name, default));
    }
    out
}

/// `.env.example`: each variable and its value (`None` when it is only
/// mentioned in a comment, `# NAME=`).
fn env_example() -> BTreeMap<String, Option<String>> {
    let text = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let (commented, line) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_name {
            let value = (!commented).then(|| value.trim().to_owned());
            vars.entry(name.to_owned()).or_insert(value);
        }
    }
    vars
}

/// The default `.env.example` must show for a variable: the drill's when
/// `batchline stack` reads it (`.env` configures `make up`), else the one
/// every command agrees on. `Err` when they disagree.
fn expected_default(args: &[EnvArg]) -> Result<Option<String>, String> {
    if let Some(stack) = args
        .iter()
        .find(|a| a.command.starts_with("batchline stack"))
    {
        return Ok(stack.default.clone());
    }
    let defaults: BTreeSet<&String> = args.iter().filter_map(|a| a.default.as_ref()).collect();
    match defaults.len() {
        0 => Ok(None),
        1 => Ok(defaults.into_iter().next().cloned()),
        _ => Err(format!("the commands disagree on its default: {args:?}")),
    }
}

#[test]
fn every_variable_the_help_shows_is_in_env_example_with_its_default() {
    let help = env_args();
    assert!(
        help.contains_key("DATABASE_URL") && help.contains_key("EXECUTORS"),
        "parsed: {help:?}"
    );
    let example = env_example();
    let mut problems = Vec::new();
    for (name, args) in &help {
        let Some(listed) = example.get(name) else {
            let shown_by: Vec<&str> = args.iter().map(|a| a.command.as_str()).collect();
            problems.push(format!(
                ".env.example does not list {name} ({shown_by:?} read it)"
            ));
            continue;
        };
        let Some(value) = listed.as_ref().filter(|v| !v.is_empty()) else {
            continue;
        };
        match expected_default(args) {
            Ok(Some(default)) if default != *value => problems.push(format!(
                ".env.example sets {name}={value}, the help's default is {default}"
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!(".env.example sets {name}={value}, but {e}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Only the variables `.env.example` sets: a commented-out one (`# NAME=`)
/// documents something (a deprecated or a hidden option) without setting it.
#[test]
fn every_variable_in_env_example_is_read_by_someone() {
    let help = env_args();
    let others: String = ["docker-compose.yml", "Dockerfile", "scripts/stack.sh"]
        .iter()
        .map(|f| std::fs::read_to_string(root().join(f)).unwrap())
        .collect();
    let stale: Vec<String> = env_example()
        .into_iter()
        .filter(|(name, value)| {
            value.is_some() && !help.contains_key(name) && !mentions(&others, name)
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        stale.is_empty(),
        ".env.example lists variables nothing reads (not in any `batchline … --help`, \
         docker-compose.yml, the Dockerfile or scripts/stack.sh): {stale:?}"
    );
}

/// `text` names the variable `name` as a whole word.
fn mentions(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

#[test]
fn the_help_parser_reads_names_and_defaults() {
    let text = "  --a <A>  Thing [env: A_B=] [default: 5]\n  --u <U>  URL [env: URL]\n  --x <X>  [env: X=] [default: a b]\n";
    assert_eq!(
        parse_env(text),
        [
            ("A_B".to_owned(), Some("5".to_owned())),
            ("URL".to_owned(), None),
            ("X".to_owned(), Some("a b".to_owned()))
        ]
    );
    assert!(mentions("x ${HOST_UID:-1} y", "HOST_UID"));
    assert!(!mentions("RABBITMQ_HOSTNAME", "RABBITMQ_HOST"));
}
