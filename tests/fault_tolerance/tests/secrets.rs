//! Secrets never leak: a pipeline runs with its passwords in the URLs (the
//! executor reads them from files: DATABASE_URL_FILE and
//! RABBITMQ_PASS_FILE; the other stages from DATABASE_URL and RABBITMQ_URL),
//! and no process log, stdout line, command output, `--help` text, error
//! line or `/metrics` page holds a password. The passwords are real: a
//! throwaway RabbitMQ user (RabbitMQ checks it) and a throwaway Postgres
//! role (trust auth does not check it, but it travels in the URL), both
//! removed at the end.

mod common;

use std::process::Command;
use std::time::Duration;

use fault_tolerance::http::{free_addr, get};
use fault_tolerance::services::run;
use fault_tolerance::{Stack, database_url, rabbitmq_url, run_cli, service_addr};
use uuid::Uuid;

use common::{PATIENCE, start_pipeline};

const LIMIT: Duration = Duration::from_secs(60);

fn rabbitmqctl(args: &[&str]) -> String {
    let mut all = vec!["-q"];
    all.extend_from_slice(args);
    run("rabbitmqctl", &all)
}

/// A RabbitMQ user with every permission on `/`, deleted on drop.
struct RabbitUser {
    name: String,
}

impl RabbitUser {
    fn new(name: &str, password: &str) -> RabbitUser {
        rabbitmqctl(&["add_user", name, password]);
        let user = RabbitUser {
            name: name.to_string(),
        };
        rabbitmqctl(&["set_permissions", "-p", "/", name, ".*", ".*", ".*"]);
        user
    }
}

impl Drop for RabbitUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.name])
            .output();
    }
}

fn psql(sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a runtime: {e}"));
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&database_url())
            .await
            .unwrap_or_else(|e| panic!("this drill needs Postgres: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// A Postgres role that may do what the stages do, dropped on drop (after
/// the stack dropped its schema and the objects the role owned in it).
struct PgRole {
    name: String,
}

impl PgRole {
    fn new(name: &str, password: &str) -> PgRole {
        psql(&format!(
            "CREATE ROLE \"{name}\" LOGIN SUPERUSER PASSWORD '{password}'"
        ));
        PgRole {
            name: name.to_string(),
        }
    }
}

impl Drop for PgRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::panic::catch_unwind(|| psql(&format!("DROP ROLE IF EXISTS \"{name}\"")));
    }
}

#[test]
fn no_password_reaches_a_log_an_output_or_a_metric() {
    let id = Uuid::new_v4().simple().to_string();
    let user = format!("ft_secret_{}", &id[..8]);
    // Distinct, greppable, and unlike anything else in a log.
    let rabbit_pass = format!("rbpw{}", &id[8..24]);
    let pg_pass = format!("pgpw{}", &id[16..32]);
    let _role = PgRole::new(&user, &pg_pass);
    let _rabbit_user = RabbitUser::new(&user, &rabbit_pass);

    let pg = service_addr(&database_url(), 5432);
    let rabbit = service_addr(&rabbitmq_url(), 5672);
    let db_url = format!("postgres://{user}:{pg_pass}@{pg}/postgres");
    let amqp_url = format!("amqp://{user}:{rabbit_pass}@{rabbit}/%2f");
    let dir = tempfile::tempdir().expect("a temp dir");
    let db_file = dir.path().join("database-url");
    let pass_file = dir.path().join("rabbitmq-pass");
    std::fs::write(&db_file, format!("{db_url}\n")).expect("write a secret file");
    std::fs::write(&pass_file, format!("{rabbit_pass}\n")).expect("write a secret file");
    let db_file = db_file.display().to_string();
    let pass_file = pass_file.display().to_string();

    let mut stack = Stack::with_env(&[
        ("DATABASE_URL", &db_url),
        ("RABBITMQ_URL", &amqp_url),
        ("RUST_LOG", "debug,sqlx=debug,lapin=debug"),
    ]);
    let executor_metrics = free_addr().to_string();
    // The executor gets its secrets from files only.
    stack.spawn(
        "executor-1",
        "executor",
        &[
            ("DATABASE_URL", ""),
            ("RABBITMQ_URL", ""),
            ("DATABASE_URL_FILE", &db_file),
            ("RABBITMQ_HOST", &rabbit.ip().to_string()),
            ("RABBITMQ_PORT", &rabbit.port().to_string()),
            ("RABBITMQ_USER", &user),
            ("RABBITMQ_PASS_FILE", &pass_file),
            ("METRICS_ADDR", &executor_metrics),
            ("CONCURRENCY", "1"),
        ],
    );
    start_pipeline(&mut stack, 0, &[]);
    common::wait_consumers(&mut stack, broker::Queue::Work, 1);
    let ids = stack.submit("--runs 3000 --chunk-size 1000 --workload sum --name secrets");
    let verdicts = stack.wait_for_verdicts(&ids, PATIENCE);
    assert!(verdicts[0].success, "{verdicts:?}");

    // The credentials were used: RabbitMQ checked the password of every
    // connection, and the stages' Postgres sessions run as the role.
    let connections = rabbitmqctl(&["list_connections", "user", "name"]);
    let ours = connections.lines().filter(|l| l.starts_with(&user)).count();
    assert!(ours >= 4, "connections of {user}: {connections}");
    let sessions = stack.scalar(
        &format!("SELECT count(*) FROM pg_stat_activity WHERE usename = '{user}'"),
        ids[0],
    );
    assert!(sessions >= 3, "Postgres sessions of {user}: {sessions}");

    let mut outputs = Vec::new();
    let env = stack.env().to_vec();
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["results", &ids[0].to_string()],
        vec!["--help"],
        vec!["executor", "--help"],
        vec!["submit", "--help"],
    ] {
        let out = run_cli(&args, &env, LIMIT);
        assert!(
            out.success(),
            "batchline {}: {}",
            args.join(" "),
            out.stderr
        );
        outputs.push((args.join(" "), format!("{}{}", out.stdout, out.stderr)));
    }
    // Failures print the URL's place, not its password.
    let wrong_port = stack.env_with(&[
        (
            "DATABASE_URL",
            &format!("postgres://{user}:{pg_pass}@127.0.0.1:1/postgres"),
        ),
        ("CONNECT_TIMEOUT_S", "1"),
    ]);
    let out = run_cli(&["status"], &wrong_port, LIMIT);
    assert!(!out.success());
    outputs.push(("status against a closed port".into(), out.stderr));
    let bad_rabbit = stack.env_with(&[
        (
            "RABBITMQ_URL",
            &format!("amqp://{user}:{rabbit_pass}@127.0.0.1:1/%2f"),
        ),
        ("CONNECT_TIMEOUT_S", "1"),
    ]);
    let out = run_cli(&["submit", "--runs", "10"], &bad_rabbit, LIMIT);
    assert!(!out.success());
    outputs.push(("submit against a closed port".into(), out.stderr));

    let (status, metrics) = get(executor_metrics.parse().expect("an address"), "/metrics")
        .expect("the executor's /metrics");
    assert_eq!(status, 200);
    outputs.push(("executor /metrics".into(), metrics));

    let logs = stack.dir().join("logs");
    for entry in std::fs::read_dir(&logs).expect("the stack's logs") {
        let path = entry.expect("a log file").path();
        let text = std::fs::read_to_string(&path).expect("read a log");
        assert!(!text.is_empty() || path.ends_with("verdict-lines.txt"));
        outputs.push((path.display().to_string(), text));
    }
    assert!(
        outputs.len() >= 13,
        "every process log was read: {:?}",
        outputs.iter().map(|(w, _)| w).collect::<Vec<_>>()
    );
    for (what, text) in &outputs {
        for secret in [&pg_pass, &rabbit_pass] {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a password:\n{text}"
            );
        }
    }
}
