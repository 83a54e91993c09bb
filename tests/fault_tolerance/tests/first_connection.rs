//! First connections (issue 21, defect 1): every stage started before
//! Postgres and RabbitMQ accept connections waits for them and then works;
//! the web console started without RabbitMQ shows results and refuses new
//! batches with a clear message until RabbitMQ answers. The services are
//! "down" behind proxies whose ports refuse connections until opened (the
//! real services are never touched). Giving up after CONNECT_TIMEOUT_S is
//! `tests/cli.rs`'s. Judged by the processes staying alive, the verdict
//! lines, the rows in Postgres and the console's HTTP answers.

mod common;

use std::time::Duration;

use broker::Queue;
use fault_tolerance::http::{free_addr, get, post_json};
use fault_tolerance::proxy::TcpProxy;
use fault_tolerance::{Stack, database_url, rabbitmq_url, service_addr, url_via};
use uuid::Uuid;

use common::{PATIENCE, wait_consumers};

fn batches(s: &Stack) -> i64 {
    s.scalar("SELECT count(*) FROM batches", Uuid::nil())
}

#[test]
fn stages_started_before_their_services_wait_for_them_then_work() {
    let mut s = Stack::new();
    let pg = TcpProxy::closed(service_addr(&database_url(), 5432));
    let mq = TcpProxy::closed(service_addr(&rabbitmq_url(), 5672));
    let (pg_url, mq_url) = (
        url_via(&database_url(), pg.addr),
        url_via(&rabbitmq_url(), mq.addr),
    );
    let down = [
        ("DATABASE_URL", pg_url.as_str()),
        ("RABBITMQ_URL", mq_url.as_str()),
    ];
    for role in ["executor", "aggregator", "verifier"] {
        s.spawn(role, role, &down);
    }
    // The console reaches Postgres but not RabbitMQ.
    let web = free_addr();
    let web_addr = web.to_string();
    s.spawn(
        "web",
        "web",
        &[("WEB_ADDR", &web_addr), ("RABBITMQ_URL", &mq_url)],
    );

    // Results are shown; a new batch is refused, and nothing is written.
    s.wait_until("the console serves the batch list", PATIENCE, |_| {
        get(web, "/api/batches").is_some_and(|(status, _)| status == 200)
    });
    let new_batch = r#"{"event":"sum","runs":2000,"chunk_size":200,"name":"after-the-broker"}"#;
    let (status, body) = post_json(web, "/api/batches", new_batch).expect("the console answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the broker is unreachable, try again when it is back"),
        "{body}"
    );
    assert_eq!(batches(&s), 0, "a refused batch leaves nothing behind");

    // Nothing answers yet: every stage is still there, waiting.
    std::thread::sleep(Duration::from_secs(3));
    s.assert_all_alive();
    pg.open();
    std::thread::sleep(Duration::from_secs(2));
    s.assert_all_alive();
    mq.open();
    wait_consumers(&mut s, Queue::Work, 1);
    wait_consumers(&mut s, Queue::Verify, 1);

    // The console accepts batches once its background connection is up.
    let mut created = String::new();
    s.wait_until(
        "the console accepts the batch",
        PATIENCE,
        |_| match post_json(web, "/api/batches", new_batch) {
            Some((201, body)) => {
                created = body;
                true
            }
            _ => false,
        },
    );
    let json: serde_json::Value = serde_json::from_str(&created).expect("JSON");
    let from_web: Uuid = json["batches"][0]["batch_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a batch id in {created}"));
    let from_cli = s.submit("--runs 3000 --chunk-size 300 --workload sum --name cli")[0];
    let ids = [from_web, from_cli];
    let verdicts = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(verdicts.iter().all(|v| v.success), "{verdicts:?}");
    for id in ids {
        s.assert_batch_exact(id);
    }
    s.assert_all_alive();
}
