//! The console's settings: [`WebArgs`] as the command line and environment
//! give them, checked into a [`WebConfig`] before anything is started.
//!
//! The one rule that matters: a console reachable from other machines must
//! ask for a token. Bound to anything but loopback it refuses to start
//! without `WEB_TOKEN` (or `WEB_TOKEN_FILE`).

use std::net::SocketAddr;
use std::path::PathBuf;

pub use pipeline::secret::Secret;
use pipeline::secret::SecretFileError;

/// `batchline web`'s options; each also comes from the environment.
#[derive(Clone, Debug, clap::Args)]
pub struct WebArgs {
    /// Address to listen on: IP:PORT, or localhost:PORT (127.0.0.1).
    /// Anything but loopback needs WEB_TOKEN.
    #[arg(long, env = "WEB_ADDR", default_value = "127.0.0.1:8080", value_parser = listen_addr)]
    pub addr: SocketAddr,
    /// Token every request must carry: typed once into the login form (which
    /// sets a cookie), or sent as `Authorization: Bearer TOKEN` to the API.
    #[arg(long, env = "WEB_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// File holding the token (e.g. a Docker secret); instead of WEB_TOKEN.
    #[arg(long, env = "WEB_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Largest event JSON accepted, in bytes.
    #[arg(long, env = "WEB_MAX_EVENT_BYTES", default_value_t = 1 << 20)]
    pub max_event_bytes: usize,
    /// Most runs one batch submitted from the console may have.
    #[arg(long, env = "WEB_MAX_RUNS", default_value_t = 10_000_000)]
    pub max_runs: i64,
    /// Most chunks one batch submitted from the console may have.
    #[arg(long, env = "WEB_MAX_CHUNKS", default_value_t = 100_000)]
    pub max_chunks: i64,
    /// Most batches one submission from the console may create.
    #[arg(long, env = "WEB_MAX_BATCHES", default_value_t = 10)]
    pub max_batches: usize,
    /// Mark the cookies `Secure` (when a proxy serves the console over HTTPS).
    #[arg(long, env = "WEB_SECURE_COOKIES")]
    pub secure_cookies: bool,
}

/// `IP:PORT`, or `localhost:PORT` as the IPv4 loopback: no name lookup,
/// so the loopback rule below can never be fooled by a resolver.
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.strip_prefix("localhost:").map(str::parse::<u16>) {
        Some(Ok(port)) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => Err(format!(
            "{text:?} is not an address to listen on: give IP:PORT (127.0.0.1:8080, 0.0.0.0:8080, [::1]:8080) or localhost:PORT"
        )),
    }
}

/// Shortest token accepted: guessing one must be hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a request may ask of the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_runs: i64,
    pub max_chunks: i64,
    pub max_batches: usize,
}

/// Checked settings.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub addr: SocketAddr,
    pub token: Option<Secret>,
    pub limits: Limits,
    pub secure_cookies: bool,
}

/// Why the settings cannot be used; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "WEB_ADDR {0} is not a loopback address: set WEB_TOKEN (or WEB_TOKEN_FILE) so that every request must carry a token"
    )]
    TokenRequired(SocketAddr),
    #[error("set WEB_TOKEN or WEB_TOKEN_FILE, not both")]
    TwoTokens,
    #[error(transparent)]
    TokenFile(#[from] SecretFileError),
    #[error("the web token must be at least {MIN_TOKEN_CHARS} characters, got {0}")]
    ShortToken(usize),
    #[error("{0} must be at least 1")]
    Limit(&'static str),
}

impl WebConfig {
    /// Checks `args` and reads the token file.
    pub fn from_args(args: &WebArgs) -> Result<WebConfig, SettingsError> {
        let token = match (&args.token, &args.token_file) {
            (Some(_), Some(_)) => return Err(SettingsError::TwoTokens),
            (Some(t), None) => Some(t.clone()),
            (None, Some(path)) => Some(pipeline::secret::read_file("WEB_TOKEN_FILE", path)?),
            (None, None) => None,
        };
        if let Some(t) = &token {
            let chars = t.expose().chars().count();
            if chars < MIN_TOKEN_CHARS {
                return Err(SettingsError::ShortToken(chars));
            }
        }
        if token.is_none() && !args.addr.ip().is_loopback() {
            return Err(SettingsError::TokenRequired(args.addr));
        }
        for (name, value) in [
            ("WEB_MAX_EVENT_BYTES", args.max_event_bytes as i64),
            ("WEB_MAX_RUNS", args.max_runs),
            ("WEB_MAX_CHUNKS", args.max_chunks),
            ("WEB_MAX_BATCHES", args.max_batches as i64),
        ] {
            if value < 1 {
                return Err(SettingsError::Limit(name));
            }
        }
        Ok(WebConfig {
            addr: args.addr,
            token,
            limits: Limits {
                max_event_bytes: args.max_event_bytes,
                max_runs: args.max_runs,
                max_chunks: args.max_chunks,
                max_batches: args.max_batches,
            },
            secure_cookies: args.secure_cookies,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        web: WebArgs,
    }

    fn parse(args: &[&str]) -> WebArgs {
        let mut all = vec!["web"];
        all.extend(args);
        Cli::try_parse_from(all).unwrap().web
    }

    #[test]
    fn loopback_needs_no_token_anything_else_does() {
        let config = WebConfig::from_args(&parse(&[])).unwrap();
        assert_eq!(config.addr.to_string(), "127.0.0.1:8080");
        assert!(config.token.is_none());
        assert!(WebConfig::from_args(&parse(&["--addr", "[::1]:9000"])).is_ok());
        let local = WebConfig::from_args(&parse(&["--addr", "localhost:9001"])).unwrap();
        assert_eq!(local.addr.to_string(), "127.0.0.1:9001");
        assert!(listen_addr("localhost:http").is_err());
        assert!(listen_addr("example.com:80").is_err());

        let err = WebConfig::from_args(&parse(&["--addr", "0.0.0.0:8080"])).unwrap_err();
        assert!(matches!(err, SettingsError::TokenRequired(_)));
        assert!(err.to_string().contains("WEB_TOKEN"), "{err}");

        let open = parse(&["--addr", "0.0.0.0:8080", "--token", "0123456789abcdef"]);
        let config = WebConfig::from_args(&open).unwrap();
        assert_eq!(config.token.unwrap().expose(), "0123456789abcdef");
    }

    #[test]
    fn tokens_are_long_single_and_never_printed() {
        let short = parse(&["--token", "short"]);
        assert!(matches!(
            WebConfig::from_args(&short),
            Err(SettingsError::ShortToken(5))
        ));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-a-file-0123456789\n").unwrap();
        let path = file.to_str().unwrap();
        let config = WebConfig::from_args(&parse(&["--token-file", path])).unwrap();
        let token = config.token.unwrap();
        assert_eq!(token.expose(), "from-a-file-0123456789");
        assert_eq!(format!("{token:?}"), "Secret(***)");

        let both = parse(&["--token-file", path, "--token", "0123456789abcdef"]);
        assert!(matches!(
            WebConfig::from_args(&both),
            Err(SettingsError::TwoTokens)
        ));
        let missing = dir.path().join("missing");
        let err =
            WebConfig::from_args(&parse(&["--token-file", missing.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn limits_must_be_positive() {
        let err = WebConfig::from_args(&parse(&["--max-batches", "0"])).unwrap_err();
        assert_eq!(err.to_string(), "WEB_MAX_BATCHES must be at least 1");
    }
}
