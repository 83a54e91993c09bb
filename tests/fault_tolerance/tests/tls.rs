//! TLS to RabbitMQ and Postgres, for real: a throwaway CA signs the
//! certificate of a TLS proxy in front of each shared service (see
//! `fault_tolerance::tls`). With the right CA the whole pipeline runs over
//! TLS and a batch ends SUCCESS; a wrong CA, a certificate for another name,
//! an expired one, a missing CA file or a missing client certificate is a
//! one-line error and a non-zero exit, never a panic or a hang.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use fault_tolerance::tls::{Pki, TlsProxy, Upstream, Validity, server_config};
use fault_tolerance::{Stack, database_url, rabbitmq_url, run_cli, service_addr};
use uuid::Uuid;

use common::{DropSchema, PATIENCE, assert_one_line_error, start_pipeline};

const LIMIT: Duration = Duration::from_secs(60);

/// Where the shared services listen, from the test URLs.
fn service_addrs() -> (SocketAddr, SocketAddr) {
    (
        service_addr(&database_url(), 5432),
        service_addr(&rabbitmq_url(), 5672),
    )
}

/// Three proxies to `upstream` with certificates signed by `pki`: the
/// right one (for 127.0.0.1), one for `other_name` only, an expired one.
fn three_proxies(pki: &Pki, upstream: Upstream, other_name: &str) -> [TlsProxy; 3] {
    [
        (&["127.0.0.1"], Validity::Current),
        (&[other_name], Validity::Current),
        (&["127.0.0.1"], Validity::Expired),
    ]
    .map(|(names, validity): (&[&str; 1], Validity)| {
        let label = format!("server-{}", Uuid::new_v4().simple());
        let cert = pki.issue(&label, names, validity);
        TlsProxy::start(upstream, server_config(&cert, None))
    })
}

fn pg_url(proxy: &TlsProxy, mode: &str, ca: &str) -> String {
    format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={ca}",
        proxy.addr.port()
    )
}

fn amqps_url(proxy: &TlsProxy) -> String {
    format!("amqps://guest:guest@127.0.0.1:{}/%2f", proxy.addr.port())
}

#[test]
fn the_pipeline_runs_end_to_end_over_tls() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = Pki::new(dir.path(), "good");
    let server = pki.issue("server", &["127.0.0.1", "localhost"], Validity::Current);
    let config = server_config(&server, None);
    let (pg, rabbit) = service_addrs();
    let pg_proxy = TlsProxy::start(Upstream::Postgres(pg), config.clone());
    let amqp_proxy = TlsProxy::start(Upstream::Amqp(rabbit), config);
    let ca = pki.ca_file().display().to_string();

    let database_url = pg_url(&pg_proxy, "verify-full", &ca);
    let rabbitmq_url = amqps_url(&amqp_proxy);
    // Every process of the stack, and `migrate` in Stack::with_env, goes
    // through the proxies; the harness's own checks use the plain services.
    let mut stack = Stack::with_env(&[
        ("DATABASE_URL", database_url.as_str()),
        ("RABBITMQ_URL", rabbitmq_url.as_str()),
        ("RABBITMQ_CA_FILE", ca.as_str()),
    ]);
    start_pipeline(&mut stack, 1, &[]);
    let ids = stack.submit("--runs 3000 --chunk-size 1000 --name over-tls");
    let verdicts = stack.wait_for_verdicts(&ids, PATIENCE);
    assert!(verdicts[0].success, "{verdicts:?}");
    stack.assert_batch_exact(ids[0]);

    let status = stack.cli(&["status", &ids[0].to_string()], LIMIT);
    assert!(status.success(), "status over TLS: {}", status.stderr);
    assert!(status.stdout.contains("over-tls"), "{}", status.stdout);

    // Every stage and command connected through the proxies, and the
    // proxies only speak TLS.
    assert!(
        pg_proxy.handshakes() >= 5,
        "Postgres TLS handshakes: {}",
        pg_proxy.handshakes()
    );
    assert!(
        amqp_proxy.handshakes() >= 4,
        "AMQP TLS handshakes: {}",
        amqp_proxy.handshakes()
    );
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn postgres_refuses_a_wrong_ca_a_wrong_name_an_expired_certificate_and_a_missing_ca_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let good = Pki::new(dir.path(), "good");
    let other = Pki::new(dir.path(), "other");
    let (pg, _) = service_addrs();
    // A private schema: were a connection to succeed, status would migrate it.
    let schema = DropSchema(format!(
        "ft_tls_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    ));
    let [right, wrong_name, expired] =
        three_proxies(&good, Upstream::Postgres(pg), "db.example.test");
    let good_ca = good.ca_file().display().to_string();
    let other_ca = other.ca_file().display().to_string();

    let cases = [
        (
            "wrong CA",
            pg_url(&right, "verify-full", &other_ca),
            vec!["Postgres", "certificate", "issuer"],
        ),
        (
            "wrong name",
            pg_url(&wrong_name, "verify-full", &good_ca),
            vec!["Postgres", "certificate", "not valid for name"],
        ),
        (
            "expired",
            pg_url(&expired, "verify-full", &good_ca),
            vec!["Postgres", "certificate", "expired"],
        ),
        (
            "missing CA file",
            pg_url(&right, "verify-full", "/nonexistent/ca.pem"),
            vec!["sslrootcert", "/nonexistent/ca.pem"],
        ),
    ];
    for (case, url, mentions) in cases {
        let out = run_cli(
            &["status"],
            &env(&[("DATABASE_URL", &url), ("DB_SCHEMA", &schema.0)]),
            LIMIT,
        );
        eprintln!("{case}: {}", out.stderr.trim());
        assert_one_line_error(&out, &mentions);
    }
    assert_eq!(
        right.handshakes(),
        0,
        "a wrong CA must not complete a handshake"
    );

    // verify-ca checks the chain but not the name; the right CA passes.
    let out = run_cli(
        &["status"],
        &env(&[
            ("DATABASE_URL", &pg_url(&wrong_name, "verify-ca", &good_ca)),
            ("DB_SCHEMA", &schema.0),
        ]),
        LIMIT,
    );
    assert!(out.success(), "verify-ca with the right CA: {}", out.stderr);
    assert!(wrong_name.handshakes() >= 1);
}

#[test]
fn rabbitmq_refuses_a_wrong_ca_a_wrong_name_an_expired_certificate_and_bad_files() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let good = Pki::new(dir.path(), "good");
    let other = Pki::new(dir.path(), "other");
    let (_, rabbit) = service_addrs();
    let [right, wrong_name, expired] =
        three_proxies(&good, Upstream::Amqp(rabbit), "mq.example.test");
    let good_ca = good.ca_file().display().to_string();
    let other_ca = other.ca_file().display().to_string();
    let not_pem = dir.path().join("not-a-certificate.pem");
    std::fs::write(&not_pem, "hello\n").expect("write a file");
    let not_pem = not_pem.display().to_string();
    // Postgres stays plain: only RabbitMQ is under test.
    let stack = Stack::new();

    let right_url = amqps_url(&right);
    let cases = [
        (
            "wrong CA",
            amqps_url(&right),
            other_ca.clone(),
            vec!["RabbitMQ", "certificate", "issuer"],
        ),
        (
            "wrong name",
            amqps_url(&wrong_name),
            good_ca.clone(),
            vec!["RabbitMQ", "certificate", "not valid for name"],
        ),
        (
            "expired",
            amqps_url(&expired),
            good_ca.clone(),
            vec!["RabbitMQ", "certificate", "expired"],
        ),
        (
            "missing CA file",
            right_url.clone(),
            "/nonexistent/ca.pem".into(),
            vec!["RABBITMQ_CA_FILE", "/nonexistent/ca.pem"],
        ),
        (
            "CA file without a certificate",
            right_url.clone(),
            not_pem,
            vec!["RABBITMQ_CA_FILE", "no PEM certificate"],
        ),
        (
            "a CA with a plain URL",
            stack
                .env()
                .iter()
                .find(|(k, _)| k == "RABBITMQ_URL")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            good_ca.clone(),
            vec!["amqps://"],
        ),
    ];
    for (case, url, ca, mentions) in cases {
        let env = stack.env_with(&[("RABBITMQ_URL", &url), ("RABBITMQ_CA_FILE", &ca)]);
        let out = run_cli(&["submit", "--runs", "10"], &env, LIMIT);
        eprintln!("{case}: {}", out.stderr.trim());
        assert_one_line_error(&out, &mentions);
        assert!(
            !out.stderr.contains("guest:guest"),
            "no password in: {}",
            out.stderr
        );
    }
    assert_eq!(
        right.handshakes(),
        0,
        "a wrong CA must not complete a handshake"
    );

    let env = stack.env_with(&[("RABBITMQ_URL", &right_url), ("RABBITMQ_CA_FILE", &good_ca)]);
    let out = run_cli(&["submit", "--runs", "10"], &env, LIMIT);
    assert!(out.success(), "the right CA: {}", out.stderr);
    assert!(right.handshakes() >= 1);
}

#[test]
fn rabbitmq_client_certificate_is_presented_when_the_broker_asks() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let pki = Pki::new(dir.path(), "mtls");
    let server = pki.issue("server", &["127.0.0.1"], Validity::Current);
    let client = pki.issue("client", &["batchline-executor"], Validity::Current);
    let (_, rabbit) = service_addrs();
    // The proxy demands a client certificate signed by the same CA.
    let proxy = TlsProxy::start(Upstream::Amqp(rabbit), server_config(&server, Some(&pki)));
    let stack = Stack::new();
    let ca = pki.ca_file().display().to_string();
    let url = amqps_url(&proxy);
    let base = [
        ("RABBITMQ_URL", url.as_str()),
        ("RABBITMQ_CA_FILE", ca.as_str()),
    ];

    let out = run_cli(&["submit", "--runs", "10"], &stack.env_with(&base), LIMIT);
    eprintln!("no client certificate: {}", out.stderr.trim());
    assert_one_line_error(&out, &["RabbitMQ"]);
    assert_eq!(proxy.handshakes(), 0);

    let cert = client.cert_file.display().to_string();
    let key = client.key_file.display().to_string();
    let only_cert = stack.env_with(&[base[0], base[1], ("RABBITMQ_CLIENT_CERT_FILE", &cert)]);
    let out = run_cli(&["submit", "--runs", "10"], &only_cert, LIMIT);
    assert_one_line_error(&out, &["RABBITMQ_CLIENT_KEY_FILE"]);

    let with_cert = stack.env_with(&[
        base[0],
        base[1],
        ("RABBITMQ_CLIENT_CERT_FILE", &cert),
        ("RABBITMQ_CLIENT_KEY_FILE", &key),
    ]);
    let out = run_cli(&["submit", "--runs", "10"], &with_cert, LIMIT);
    assert!(out.success(), "with the client certificate: {}", out.stderr);
    assert!(proxy.handshakes() >= 1);
}
