//! TLS options of the connections. RabbitMQ: `amqps://` URLs, a CA file
//! and an optional client certificate, read here into a
//! [`broker::RabbitTls`]. Postgres: sqlx reads `sslmode`, `sslrootcert`,
//! `sslcert` and `sslkey` from the URL (or libpq's `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`); [`check_postgres_files`] makes
//! a missing file among them a one-line error naming it before connecting,
//! instead of a bare "No such file or directory" from the handshake.

use std::path::{Path, PathBuf};

use anyhow::Context;
use broker::RabbitTls;
use clap::Args;

/// TLS material for RabbitMQ.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// CA certificate(s), PEM, that sign RabbitMQ's certificate; trusted
    /// besides the system roots. Needs an amqps:// URL.
    #[arg(long, global = true, env = "RABBITMQ_CA_FILE", value_name = "PATH")]
    pub rabbitmq_ca_file: Option<PathBuf>,
    /// Client certificate chain, PEM, presented to RabbitMQ (with RABBITMQ_CLIENT_KEY_FILE).
    #[arg(
        long,
        global = true,
        env = "RABBITMQ_CLIENT_CERT_FILE",
        value_name = "PATH"
    )]
    pub rabbitmq_client_cert_file: Option<PathBuf>,
    /// Private key of the client certificate, PEM (PKCS#8, PKCS#1 or SEC1), unencrypted.
    #[arg(
        long,
        global = true,
        env = "RABBITMQ_CLIENT_KEY_FILE",
        value_name = "PATH"
    )]
    pub rabbitmq_client_key_file: Option<PathBuf>,
}

fn read(var: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {var} {}", path.display()))
}

/// The RabbitMQ TLS settings the options name; empty when none is set.
pub fn rabbit_tls(args: &TlsArgs) -> anyhow::Result<RabbitTls> {
    let mut tls = RabbitTls::default();
    if let Some(path) = &args.rabbitmq_ca_file {
        tls = tls
            .with_ca_pem(&read("RABBITMQ_CA_FILE", path)?)
            .with_context(|| format!("RABBITMQ_CA_FILE {}", path.display()))?;
    }
    match (
        &args.rabbitmq_client_cert_file,
        &args.rabbitmq_client_key_file,
    ) {
        (Some(cert), Some(key)) => {
            let cert_pem = read("RABBITMQ_CLIENT_CERT_FILE", cert)?;
            let key_pem = read("RABBITMQ_CLIENT_KEY_FILE", key)?;
            tls = tls
                .with_client_identity(&cert_pem, &key_pem)
                .with_context(|| {
                    format!(
                        "RABBITMQ_CLIENT_CERT_FILE {} / RABBITMQ_CLIENT_KEY_FILE {}",
                        cert.display(),
                        key.display()
                    )
                })?;
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "RABBITMQ_CLIENT_CERT_FILE and RABBITMQ_CLIENT_KEY_FILE go together: set both or neither"
        ),
    }
    Ok(tls)
}

/// URL parameters (and their libpq variables) that name a file sqlx reads
/// during the TLS handshake.
const PG_FILE_PARAMS: [(&[&str], &str); 3] = [
    (&["sslrootcert", "ssl-root-cert", "ssl-ca"], "PGSSLROOTCERT"),
    (&["sslcert", "ssl-cert"], "PGSSLCERT"),
    (&["sslkey", "ssl-key"], "PGSSLKEY"),
];

/// Checks that every certificate or key file the Postgres URL (or the
/// libpq variables) names can be read.
pub fn check_postgres_files(database_url: &str) -> anyhow::Result<()> {
    // An unparsable URL is left to sqlx, which says what is wrong with it.
    let Ok(url) = url::Url::parse(database_url) else {
        return Ok(());
    };
    for (params, env) in PG_FILE_PARAMS {
        let from_url = url
            .query_pairs()
            .find(|(k, _)| params.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()));
        let named = from_url.or_else(|| {
            std::env::var(env)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (env.to_owned(), v))
        });
        let Some((name, value)) = named else { continue };
        // sqlx takes PEM text in place of a path too.
        if value.starts_with("-----BEGIN") {
            continue;
        }
        std::fs::File::open(&value)
            .with_context(|| format!("cannot read the Postgres {name} file {value}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_postgres_ca_file_is_named() {
        let url = "postgres://u:pw@db:5432/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
        let error = format!("{:#}", check_postgres_files(url).unwrap_err());
        assert!(
            error.contains("sslrootcert file /nonexistent/ca.pem"),
            "{error}"
        );
        assert!(!error.contains("pw"), "{error}");
    }

    #[test]
    fn readable_files_and_urls_without_files_pass() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        let url = format!(
            "postgres://u@db/x?sslmode=verify-ca&sslrootcert={}",
            ca.path().display()
        );
        check_postgres_files(&url).unwrap();
        check_postgres_files("postgres://u@db/x?sslmode=require").unwrap();
        check_postgres_files("not a url").unwrap();
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let args = TlsArgs {
            rabbitmq_ca_file: None,
            rabbitmq_client_cert_file: Some("/tmp/cert.pem".into()),
            rabbitmq_client_key_file: None,
        };
        let error = rabbit_tls(&args).unwrap_err().to_string();
        assert!(error.contains("go together"), "{error}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let args = TlsArgs {
            rabbitmq_ca_file: Some("/nonexistent/ca.pem".into()),
            rabbitmq_client_cert_file: None,
            rabbitmq_client_key_file: None,
        };
        let error = format!("{:#}", rabbit_tls(&args).unwrap_err());
        assert!(
            error.contains("RABBITMQ_CA_FILE /nonexistent/ca.pem"),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
    }
}
