//! The console's handlers against the real Postgres and RabbitMQ: each
//! test gets its own schema and queue prefix, drives the router the binary
//! serves (`web::router`) request by request, and checks the answers and
//! what landed in Postgres and RabbitMQ. Bad input is the point: escaping,
//! CSRF, limits, malformed and invalid events, the token.
//!
//! Needs Postgres at `DATABASE_URL` and RabbitMQ at `RABBITMQ_URL` (local
//! defaults); fails with the URL when either is absent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use store::prelude::*;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use broker::{Broker, Queue, RabbitBroker, RabbitConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use store::{Catalog, PgStore, Store, Uuid, Verdict};
use tower::ServiceExt;
use web::{Limits, Secret, WebConfig};

const TOKEN: &str = "test-token-0123456789";
const LIMITS: Limits = Limits {
    max_event_bytes: 1 << 20,
    max_runs: 100_000,
    max_chunks: 50,
    max_batches: 3,
};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

/// One test's services: its own schema and queues.
#[derive(Clone)]
struct Services {
    store: PgStore,
    broker: RabbitBroker,
}

impl Services {
    async fn new() -> Services {
        let id = Uuid::new_v4().simple().to_string();
        let url = env_or(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        );
        let store = PgStore::connect_with_schema(&url, &format!("web_test_{}", &id[..16]))
            .await
            .unwrap_or_else(|e| panic!("these tests need Postgres at DATABASE_URL={url}: {e}"));
        store.migrate().await.expect("migrations apply");
        let config = RabbitConfig {
            prefix: format!("web-test-{}", &id[..16]),
            ..RabbitConfig::new(env_or(
                "RABBITMQ_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            ))
        };
        let redacted = config.redacted_url();
        let broker = tokio::time::timeout(Duration::from_secs(20), RabbitBroker::connect(config))
            .await
            .unwrap_or_else(|_| panic!("these tests need RabbitMQ at {redacted}: no answer"))
            .unwrap_or_else(|e| panic!("these tests need RabbitMQ at {redacted}: {e}"));
        Services { store, broker }
    }

    fn app(&self, token: Option<&str>) -> Router {
        let config = WebConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: token.map(Secret::new),
            limits: LIMITS,
            secure_cookies: false,
        };
        web::router(&config, self.broker.clone(), self.store.clone())
    }

    async fn cleanup(self) {
        let _ = self.broker.delete_topology().await;
        let _ = self.store.drop_schema().await;
    }
}

/// Runs `case` and removes its schema and queues afterwards, also when it panics.
async fn with_services<F, Fut>(case: F)
where
    F: FnOnce(Services) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let s = Services::new().await;
    let outcome = tokio::spawn(case(s.clone())).await;
    s.cleanup().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value a `Set-Cookie` gives `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap_or_default().to_string())
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post_json(app: &Router, uri: &str, body: impl Into<Body>) -> Answer {
    let request = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    send(app, request).await
}

/// A browser's CSRF token: the cookie the first page sets.
async fn csrf_token(app: &Router) -> String {
    let page = get(app, "/batches/new").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let token = page.cookie("batchline_csrf").expect("a CSRF cookie");
    assert!(page.body.contains(&token), "the form carries the token");
    token
}

fn form_post(uri: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("batchline_csrf={cookie}"))
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn multipart(uri: &str, cookie: &str, fields: &[(&str, &str)]) -> Request<Body> {
    let boundary = "XbatchlineX";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Request::post(uri)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(header::COOKIE, format!("batchline_csrf={cookie}"))
        .body(Body::from(body))
        .unwrap()
}

fn spring_league() -> workload::Event {
    workload::Event::spring_league()
}

fn event_json(name: &str) -> String {
    let mut e = spring_league();
    e.name = name.into();
    serde_json::to_string_pretty(&e).unwrap()
}

#[tokio::test]
async fn names_with_markup_are_shown_as_text() {
    with_services(|s| async move {
        let app = s.app(None);
        let evil = "<script>alert(1)</script>";
        let created = post_json(
            &app,
            "/api/batches",
            json!({"runs": 100, "chunk_size": 50, "name": evil}).to_string(),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.json()["batches"][0]["batch_id"]
            .as_str()
            .unwrap()
            .to_string();
        let saved = post_json(&app, "/api/events", event_json(evil)).await;
        assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);
        let event_id = saved.json()["id"].as_str().unwrap().to_string();

        for uri in [
            "/batches".to_string(),
            format!("/batches/{id}"),
            format!("/batches/{id}/live"),
            "/events".to_string(),
            format!("/events/{event_id}"),
            format!("/batches/new?event={event_id}"),
        ] {
            let page = get(&app, &uri).await;
            assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
            assert!(
                !page.body.contains("<script>alert"),
                "{uri} has the raw name"
            );
            assert!(
                page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{uri}"
            );
        }
        // The page sets a policy that would stop an inline script anyway.
        let page = get(&app, "/batches").await;
        let csp = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        // A name with brackets is refused by submit itself, as in the CLI.
        let bad = post_json(
            &app,
            "/api/batches",
            json!({"runs": 10, "name": "a[b]"}).to_string(),
        )
        .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    })
    .await;
}

#[tokio::test]
async fn the_form_submits_like_batchline_submit_and_needs_its_token() {
    with_services(|s| async move {
        let app = s.app(None);
        let token = csrf_token(&app).await;
        let fields = "event=builtin&runs=1000&chunk_size=300&seed=42&count=1&name=from-the-form";

        // No token, a wrong one, another site: refused, nothing created.
        for (cookie, body) in [
            (token.as_str(), fields.to_string()),
            (token.as_str(), format!("{fields}&csrf={}", "0".repeat(64))),
        ] {
            let answer = send(&app, form_post("/batches", cookie, &body)).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
            assert!(answer.body.contains("reload the page"), "{}", answer.body);
        }
        let mut cross = form_post("/batches", &token, &format!("{fields}&csrf={token}"));
        cross
            .headers_mut()
            .insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        cross
            .headers_mut()
            .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert_eq!(send(&app, cross).await.status, StatusCode::FORBIDDEN);
        assert!(
            s.store.progress(None, 10).await.unwrap().is_empty(),
            "nothing was created"
        );

        // With the token: the batch exists as submit writes it, its first
        // chunks are dispatched (the rest wait their turn in the store).
        let answer = send(
            &app,
            form_post("/batches", &token, &format!("{fields}&csrf={token}")),
        )
        .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let (path, query) = answer.location().split_once('?').unwrap();
        let id: Uuid = path.strip_prefix("/batches/").unwrap().parse().unwrap();
        // No executor runs: the page it lands on says there is no estimate.
        assert_eq!(query, "started=1");
        let landed = get(&app, answer.location()).await;
        assert!(
            landed.body.contains("No estimate: no executor is running"),
            "{}",
            landed.body
        );
        let batch = s.store.batch(id).await.unwrap().expect("the batch row");
        assert_eq!(
            (
                batch.name.as_str(),
                batch.runs,
                batch.chunk_size,
                batch.seed
            ),
            ("from-the-form", 1000, 300, 42)
        );
        assert_eq!(batch.chunks, 4);
        assert_eq!(
            batch.workload,
            serde_json::to_string(&workload::WorkloadSpec::bingo_default()).unwrap()
        );
        // As many work messages as the dispatch marked published (how many
        // depends on the estimate: cheap chunks go out together).
        let view = s.store.queue().await.unwrap();
        let queued = view
            .batches
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.chunks_queued)
            .expect("the batch waits in the queue");
        assert!(queued >= 1, "its first chunks were dispatched");
        assert_eq!(
            s.broker.queue_depth(Queue::Work).await.unwrap(),
            queued as u64,
            "one work message per dispatched chunk"
        );
        let page = get(&app, &format!("/batches/{id}")).await;
        assert!(
            page.body.contains("data-live=\"/batches/"),
            "an unfinished batch refreshes itself"
        );

        // A refused form comes back with the message and the values typed.
        let answer = send(
            &app,
            form_post(
                "/batches",
                &token,
                &format!("event=builtin&runs=lots&chunk_size=10&count=1&csrf={token}"),
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            answer
                .body
                .contains("Runs per batch: enter a whole number, not &quot;lots&quot;."),
            "{}",
            answer.body
        );
        assert!(answer.body.contains("value=\"lots\""));
    })
    .await;
}

#[tokio::test]
async fn limits_are_enforced_with_clear_messages() {
    with_services(|s| async move {
        let app = s.app(None);
        for (body, says) in [
            (
                json!({"runs": 100_001}),
                "Runs per batch: between 1 and 100,000, not 100,001.",
            ),
            (
                json!({"runs": 10_000, "chunk_size": 100}),
                "would make 100 chunks, and a batch may have at most 50. Choose a chunk size of at least 200.",
            ),
            (
                json!({"runs": 10, "count": 4}),
                "Batches: between 1 and 3, not 4.",
            ),
            (
                json!({"runs": 10, "name": "n".repeat(81)}),
                "Name must be at most 80 characters, not 81.",
            ),
            (json!({"runs": 10, "event": "nope"}), "saved event's id"),
            (
                json!({"runs": 10, "event": Uuid::new_v4()}),
                "no saved event",
            ),
            (
                json!({"runs": 10, "colour": "red"}),
                "unknown field `colour`",
            ),
        ] {
            let answer = post_json(&app, "/api/batches", body.to_string()).await;
            assert!(answer.status.is_client_error(), "{body}: {}", answer.status);
            let error = answer.json()["error"].as_str().unwrap().to_string();
            assert!(error.contains(says), "{body}: {error}");
        }
        assert!(
            s.store.progress(None, 10).await.unwrap().is_empty(),
            "nothing was created"
        );

        // An event over 1 MiB: 413 naming the limit, as JSON and from the form.
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat((1 << 20) + 1));
        let answer = post_json(&app, "/api/events", big.clone()).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("1048576-byte limit"),
            "{}",
            answer.body
        );
        let token = csrf_token(&app).await;
        let answer = send(
            &app,
            multipart(
                "/events",
                &token,
                &[("csrf", &token), ("event", &big), ("action", "save")],
            ),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            answer.body
        );
        assert!(answer.body.contains("1048576"), "{}", answer.body);
        // The API wants JSON, which is also what keeps cross-site forms out.
        let form = Request::post("/api/events")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(event_json("plain")))
            .unwrap();
        assert_eq!(
            send(&app, form).await.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(s.store.list_events(0, 10).await.unwrap().total, 0);
    })
    .await;
}

#[tokio::test]
async fn every_problem_of_a_request_comes_at_once_in_the_consoles_words() {
    with_services(|s| async move {
        let app = s.app(None);
        // The API: one error sentence, and the list.
        let body = json!({"runs": 0, "chunk_size": 0, "count": 9, "name": "a\nb"});
        let answer = post_json(&app, "/api/batches", body.to_string()).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        let problems = answer.json()["problems"].as_array().unwrap().clone();
        assert_eq!(problems.len(), 4, "{}", answer.body);
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(!error.contains("--") && !error.contains("(s)"), "{error}");

        // The form: unreadable and out-of-range fields together, as a list.
        let token = csrf_token(&app).await;
        let form = format!(
            "event=builtin&runs=lots&chunk_size=0&seed=x&count=99&name={}&csrf={token}",
            "n".repeat(90)
        );
        let page = send(&app, form_post("/batches", &token, &form)).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        for says in [
            "Runs per batch: enter a whole number, not &quot;lots&quot;.",
            "Chunk size: at least 1, not 0.",
            "Seed: enter a whole number, not &quot;x&quot;.",
            "Batches: between 1 and 3, not 99.",
            "Name must be at most 80 characters, not 90.",
        ] {
            assert!(page.body.contains(says), "{says}: {}", page.body);
        }
        assert_eq!(page.body.matches("<li>").count(), 5, "{}", page.body);
        // The form keeps what was typed, and suggests the CLI's chunk size.
        assert!(page.body.contains("value=\"lots\""));
        let fresh = get(&app, "/batches/new").await;
        assert!(
            fresh.body.contains("name=\"chunk_size\" value=\"10000\""),
            "{}",
            fresh.body
        );
        assert!(s.store.progress(None, 10).await.unwrap().is_empty());

        // An event name past the limit is refused with the limit.
        let long = event_json(&"e".repeat(81));
        let answer = post_json(&app, "/api/events", long).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            answer
                .body
                .contains("name: must be at most 80 characters, not 81"),
            "{}",
            answer.body
        );
    })
    .await;
}

#[tokio::test]
async fn malformed_ids_get_the_consoles_error_page_or_json() {
    with_services(|s| async move {
        let app = s.app(None);
        for uri in [
            "/batches/not-an-id",
            "/batches/123/live",
            "/batches/%3Cscript%3E/event",
            "/events/nope",
            "/events/nope/delete",
        ] {
            let page = get(&app, uri).await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{uri}");
            assert!(
                page.headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"),
                "{uri}"
            );
            assert!(
                page.body.contains("<h1>404 Not Found</h1>"),
                "{uri}: {}",
                page.body
            );
            assert!(page.body.contains("no valid id"), "{uri}: {}", page.body);
            assert!(!page.body.contains("<script>"), "{uri}");
        }
        for uri in [
            "/api/batches/not-an-id",
            "/api/batches/1/chunks",
            "/api/events/x",
        ] {
            let answer = get(&app, uri).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
            let error = answer.json()["error"].as_str().unwrap().to_string();
            assert!(error.contains("no valid id"), "{uri}: {error}");
        }
    })
    .await;
}

#[tokio::test]
async fn seeds_travel_as_numbers_and_as_strings() {
    with_services(|s| async move {
        let app = s.app(None);
        let big = (1i64 << 53) + 1;
        let body = json!({"runs": 10, "chunk_size": 10, "seed": big.to_string(), "count": 2, "name": "seeds"});
        let answer = post_json(&app, "/api/batches", body.to_string()).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        let created = answer.json()["batches"].as_array().unwrap().clone();
        assert_eq!(created[0]["seed_text"], big.to_string());
        assert_eq!(created[1]["seed_text"], (big + 1).to_string());
        assert_eq!(created[0]["seed"], json!(big));
        let id = created[0]["batch_id"].as_str().unwrap();
        let detail = get(&app, &format!("/api/batches/{id}")).await.json();
        assert_eq!(detail["seed_text"], big.to_string());
        // The two batches of the submission are listed in their order.
        let list = get(&app, "/api/batches").await.json();
        let names: Vec<&str> = list["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["seeds-1", "seeds-2"]);
        let bad = json!({"runs": 10, "seed": "twelve"});
        let answer = post_json(&app, "/api/batches", bad.to_string()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn the_builtin_event_is_a_template_and_deleting_asks_first() {
    with_services(|s| async move {
        let app = s.app(None);
        let library = get(&app, "/events").await;
        assert!(
            library.body.contains("href=\"/events/builtin\""),
            "{}",
            library.body
        );
        let board = get(&app, "/events/builtin").await;
        assert_eq!(board.status, StatusCode::OK);
        assert!(board.body.contains("Spring League Bingo"));
        let template = get(&app, "/events?template=builtin").await;
        assert!(
            template
                .body
                .contains("&quot;name&quot;: &quot;Spring League Bingo&quot;")
        );
        let json = get(&app, "/events/builtin/event.json").await;
        assert_eq!(json.json()["name"], "Spring League Bingo");

        let saved = post_json(&app, "/api/events", event_json("to delete")).await;
        let id = saved.json()["id"].as_str().unwrap().to_string();
        let event_page = get(&app, &format!("/events/{id}")).await;
        assert!(
            event_page
                .body
                .contains(&format!("href=\"/events/{id}/delete\""))
        );
        assert!(
            !event_page
                .body
                .contains("method=\"post\" action=\"/events/"),
            "the event page itself deletes nothing"
        );
        let confirm = get(&app, &format!("/events/{id}/delete")).await;
        assert_eq!(confirm.status, StatusCode::OK);
        assert!(
            confirm.body.contains("Delete to delete?"),
            "{}",
            confirm.body
        );
        assert!(
            confirm
                .body
                .contains(&format!("action=\"/events/{id}/delete\""))
        );
        assert_eq!(
            s.store.list_events(0, 10).await.unwrap().total,
            1,
            "asking deletes nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn ties_show_in_the_api_and_compare_which_leads_somewhere() {
    with_services(|s| async move {
        let app = s.app(None);
        let created = |body: Value| {
            let app = app.clone();
            async move {
                let answer = post_json(&app, "/api/batches", body.to_string()).await;
                assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
                answer.json()["batches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["batch_id"].as_str().unwrap().parse::<Uuid>().unwrap())
                    .collect::<Vec<_>>()
            }
        };
        let bingo = created(json!({"runs": 2, "chunk_size": 2, "count": 2, "name": "cmp"})).await;
        let sum =
            created(json!({"runs": 2, "chunk_size": 2, "event": "sum", "name": "total"})).await[0];
        // Aggregates as the aggregator would store them: one run won, one tied.
        let spec = workload::WorkloadSpec::bingo_default();
        let mut summary = workload::Workload::new(&spec).unwrap().empty_summary();
        summary.add(&[0, 120, 40, 10, 100, 30, 9]).unwrap();
        summary.add(&[0, 110, 40, 10, 110, 30, 9]).unwrap();
        let json = serde_json::to_string(&summary).unwrap();
        s.store
            .save_batch_result(bingo[0], &json, 0, None)
            .await
            .unwrap();
        // The second as a build from before tie counts stored it.
        let older = serde_json::to_string(&summary.clone().without_tie_counts()).unwrap();
        assert!(!older.contains("tie"), "{older}");
        s.store
            .save_batch_result(bingo[1], &older, 0, None)
            .await
            .unwrap();
        let mut totals = workload::Workload::new(&workload::WorkloadSpec::Sum)
            .unwrap()
            .empty_summary();
        totals.add(&[5]).unwrap();
        let totals = serde_json::to_string(&totals).unwrap();
        s.store
            .save_batch_result(sum, &totals, 0, None)
            .await
            .unwrap();

        let report = &get(&app, &format!("/api/batches/{}", bingo[0]))
            .await
            .json()["result"]["report"];
        assert_eq!(report["tied_runs"], 1);
        assert_eq!(report["tie_rate"], 0.5);
        assert_eq!(report["teams"][0]["wins"], 1);
        assert_eq!(report["teams"][1]["ties"], 1);
        let report = &get(&app, &format!("/api/batches/{}", bingo[1]))
            .await
            .json()["result"]["report"];
        assert_eq!(report["tied_runs"], Value::Null);
        assert_eq!(report["teams"][0]["wins"], 2, "older wins include the tie");
        let page = get(&app, &format!("/batches/{}", bingo[1])).await;
        assert!(
            page.body.contains("Ties were not counted for this batch"),
            "{}",
            page.body
        );

        // One batch chosen: a list to pick the others from, not a dead end.
        let picker = get(&app, &format!("/compare?b={}", bingo[0])).await;
        assert_eq!(picker.status, StatusCode::OK);
        assert!(
            picker.body.contains("Compare cmp-1 with"),
            "{}",
            picker.body
        );
        for other in [bingo[1], sum] {
            assert!(
                picker
                    .body
                    .contains(&format!("type=\"checkbox\" name=\"b\" value=\"{other}\"")),
                "{}",
                picker.body
            );
        }
        assert!(!picker.body.contains(&format!(
            "type=\"checkbox\" name=\"b\" value=\"{}\"",
            bingo[0]
        )));

        let uri = format!("compare?b={}&b={}&b={sum}", bingo[0], bingo[1]);
        let page = get(&app, &format!("/{uri}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Tied (no winner)"), "{}", page.body);
        assert!(
            page.body
                .contains("<strong>total</strong> (a sum batch: no teams, only totals)"),
            "{}",
            page.body
        );
        let api = get(&app, &format!("/api/{uri}")).await.json();
        assert!(api["batches"][0]["tie_rate_ci95"].is_array());
        assert!(api["batches"][1]["tie_rate_ci95"].is_null());
    })
    .await;
}

#[tokio::test]
async fn bad_events_say_where_and_save_nothing() {
    with_services(|s| async move {
        let app = s.app(None);
        let broken = "{\n  \"name\": \"x\",\n  \"start\": oops\n}";
        let answer = post_json(&app, "/api/events", broken).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let body = answer.json();
        assert_eq!(
            (body["line"].as_u64(), body["column"].as_u64()),
            (Some(3), Some(12)),
            "{body}"
        );
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with("line 3, column 12: expected value"),
            "{body}"
        );

        let mut invalid = spring_league();
        invalid.unlock_threshold = 42;
        invalid.rows[3].tiles[1].rules[0].activity = "cox2".into();
        let invalid = serde_json::to_string(&invalid).unwrap();
        let answer = post_json(&app, "/api/events/check", invalid.clone()).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        let problems = answer.json()["problems"].as_array().unwrap().clone();
        assert_eq!(problems.len(), 2, "{problems:?}");

        // The form: the parser's place with the line it is on; every problem listed.
        let token = csrf_token(&app).await;
        let page = send(
            &app,
            multipart(
                "/events",
                &token,
                &[("csrf", &token), ("event", broken), ("action", "save")],
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains("line 3, column 12"), "{}", page.body);
        assert!(
            page.body
                .contains("  &quot;start&quot;: oops\n           ^"),
            "{}",
            page.body
        );
        let page = send(
            &app,
            multipart(
                "/events",
                &token,
                &[("csrf", &token), ("event", &invalid), ("action", "save")],
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            page.body.contains(
                "rows[3].tiles[1] (s2-r3).rules[0]: activity &quot;cox2&quot; is not defined"
            ),
            "{}",
            page.body
        );
        assert!(page.body.contains("unlock_threshold: 42"), "{}", page.body);
        // Checking a valid event saves nothing either; the token is checked first.
        let valid = event_json("Checked only");
        let page = send(
            &app,
            multipart(
                "/events",
                &token,
                &[("csrf", &token), ("event", &valid), ("action", "check")],
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(
            page.body.contains("Valid: <strong>Checked only</strong>"),
            "{}",
            page.body
        );
        let page = send(
            &app,
            multipart("/events", &token, &[("event", &valid), ("action", "save")]),
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert_eq!(
            s.store.list_events(0, 10).await.unwrap().total,
            0,
            "nothing half-saved"
        );
    })
    .await;
}

#[tokio::test]
async fn saved_events_link_their_batches_and_stay_once_run() {
    with_services(|s| async move {
        let app = s.app(None);
        let token = csrf_token(&app).await;
        let text = event_json("Library event");
        let page = send(
            &app,
            multipart(
                "/events",
                &token,
                &[("csrf", &token), ("event", &text), ("action", "save")],
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let id: Uuid = page
            .location()
            .strip_prefix("/events/")
            .unwrap()
            .parse()
            .unwrap();
        // Saving it again finds it.
        let again = post_json(&app, "/api/events", text.clone()).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json()["id"], json!(id));

        let board = get(&app, &format!("/events/{id}")).await;
        assert_eq!(
            board.body.matches("class=\"tile ").count(),
            80,
            "20 rows x 4 tiles"
        );
        let file = get(&app, &format!("/events/{id}/event.json")).await;
        assert!(
            file.headers[header::CONTENT_DISPOSITION]
                .to_str()
                .unwrap()
                .contains("library-event.json")
        );
        let back: workload::Event = serde_json::from_str(&file.body).unwrap();
        assert_eq!(back.name, "Library event");

        let created = post_json(
            &app,
            "/api/batches",
            json!({"runs": 100, "chunk_size": 50, "event": id}).to_string(),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let batch = created.json()["batches"][0]["batch_id"]
            .as_str()
            .unwrap()
            .to_string();
        let detail = get(&app, &format!("/api/batches/{batch}")).await.json();
        assert_eq!(
            detail["event"],
            json!({"kind": "saved", "id": id, "name": "Library event"})
        );
        let listed = get(&app, &format!("/api/batches?event={id}")).await.json();
        assert_eq!(listed["total"], 1);

        // Run once, the event stays.
        let del = send(
            &app,
            Request::delete(format!("/api/events/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(del.status, StatusCode::CONFLICT, "{}", del.body);
        let form = send(
            &app,
            form_post(
                &format!("/events/{id}/delete"),
                &token,
                &format!("csrf={token}"),
            ),
        )
        .await;
        assert_eq!(form.status, StatusCode::CONFLICT);
        // An unused one goes.
        let other = post_json(&app, "/api/events", event_json("Unused"))
            .await
            .json();
        let other_id = other["id"].as_str().unwrap();
        let del = send(
            &app,
            Request::delete(format!("/api/events/{other_id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        assert_eq!(
            get(&app, &format!("/api/events/{other_id}")).await.status,
            StatusCode::NOT_FOUND
        );
    })
    .await;
}

#[tokio::test]
async fn batches_filter_page_and_show_chunks_with_errors() {
    with_services(|s| async move {
        let app = s.app(None);
        let mut ids = Vec::new();
        for name in ["alpha-1", "alpha-2", "beta-1"] {
            let answer = post_json(
                &app,
                "/api/batches",
                json!({"runs": 100, "chunk_size": 25, "name": name}).to_string(),
            )
            .await;
            ids.push(
                answer.json()["batches"][0]["batch_id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap(),
            );
        }
        let verdict = |success: bool| Verdict {
            success,
            reason: if success {
                String::new()
            } else {
                "chunk 0 failed: boom".into()
            },
            line: "x".into(),
        };
        s.store
            .record_verdict(ids[0], &verdict(true))
            .await
            .unwrap();
        s.store
            .record_verdict(ids[2], &verdict(false))
            .await
            .unwrap();
        // A failed attempt on chunk 1 of alpha-2, with its error.
        let claim = s
            .store
            .claim_chunk(ids[1], 1, "w", Duration::from_secs(30), 5)
            .await
            .unwrap();
        assert!(matches!(claim, store::Claim::Claimed { attempt: 1 }));
        s.store
            .fail_attempt(ids[1], 1, 1, 5, "simulated <b>failure</b>")
            .await
            .unwrap();

        let names = |v: &Value| -> Vec<String> {
            v["batches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["name"].as_str().unwrap().to_string())
                .collect()
        };
        let all = get(&app, "/api/batches").await.json();
        assert_eq!(
            names(&all),
            ["beta-1", "alpha-2", "alpha-1"],
            "newest first"
        );
        assert_eq!(all["batches"][2]["state"], "SUCCESS");
        assert_eq!(all["batches"][0]["reason"], "chunk 0 failed: boom");
        assert_eq!(
            names(&get(&app, "/api/batches?name=ALPHA").await.json()),
            ["alpha-2", "alpha-1"]
        );
        assert_eq!(
            names(&get(&app, "/api/batches?verdict=failure").await.json()),
            ["beta-1"]
        );
        assert_eq!(
            names(
                &get(&app, "/api/batches?verdict=unfinished&name=alpha")
                    .await
                    .json()
            ),
            ["alpha-2"]
        );
        assert_eq!(
            names(&get(&app, "/api/batches?page=2").await.json()),
            Vec::<String>::new()
        );
        let bad = get(&app, "/api/batches?verdict=maybe").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(
            bad.json()["error"]
                .as_str()
                .unwrap()
                .contains("any, success, failure, cancelled or unfinished")
        );
        assert_eq!(
            get(&app, "/api/batches?page=x").await.status,
            StatusCode::BAD_REQUEST
        );

        let chunks = get(
            &app,
            &format!("/api/batches/{}/chunks?problems=true", ids[1]),
        )
        .await
        .json();
        assert_eq!(chunks["total"], 1, "{chunks}");
        assert_eq!(
            chunks["chunks"][0]["last_error"],
            "simulated <b>failure</b>"
        );
        let page = get(&app, &format!("/batches/{}", ids[1])).await;
        assert!(
            page.body.contains("simulated &lt;b&gt;failure&lt;/b&gt;"),
            "{}",
            page.body
        );
        assert!(
            page.body.contains("1 retry") || page.body.contains("retries"),
            "attempts and retries shown"
        );
        let html = get(&app, "/batches?verdict=failure").await;
        assert!(html.body.contains("beta-1") && !html.body.contains("alpha-1"));

        let compare = get(&app, &format!("/api/compare?b={}&b={}", ids[0], ids[1])).await;
        assert_eq!(compare.status, StatusCode::OK, "{}", compare.body);
        assert_eq!(compare.json()["batches"].as_array().unwrap().len(), 2);
        assert_eq!(
            get(&app, &format!("/api/batches/{}", Uuid::new_v4()))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&app, "/api/nothing").await.json()["error"],
            "no such API endpoint"
        );
    })
    .await;
}

#[tokio::test]
async fn with_a_token_every_request_needs_it() {
    with_services(|s| async move {
        let app = s.app(Some(TOKEN));
        assert_eq!(get(&app, "/healthz").await.status, StatusCode::OK);
        assert_eq!(get(&app, "/readyz").await.status, StatusCode::OK);
        assert_eq!(get(&app, "/assets/style.css").await.status, StatusCode::OK);
        let page = get(&app, "/batches?verdict=failure").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(
            page.location(),
            "/login?next=%2Fbatches%3Fverdict%3Dfailure"
        );
        let api = get(&app, "/api/batches").await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED);
        assert_eq!(api.headers[header::WWW_AUTHENTICATE], "Bearer");

        let bearer = |t: &str| {
            Request::get("/api/batches")
                .header(header::AUTHORIZATION, format!("Bearer {t}"))
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(send(&app, bearer(TOKEN)).await.status, StatusCode::OK);
        assert_eq!(
            send(&app, bearer("test-token-0123456780")).await.status,
            StatusCode::UNAUTHORIZED
        );

        // The login form: CSRF-protected, a wrong token refused, the right one sets the cookie.
        let login = get(&app, "/login?next=/events").await;
        let csrf = login.cookie("batchline_csrf").unwrap();
        let wrong = send(
            &app,
            form_post(
                "/login",
                &csrf,
                &format!("token=nope&next=/events&csrf={csrf}"),
            ),
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.cookie("batchline_session").is_none());
        let no_csrf = send(
            &app,
            form_post("/login", &csrf, &format!("token={TOKEN}&next=/events")),
        )
        .await;
        assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
        let ok = send(
            &app,
            form_post(
                "/login",
                &csrf,
                &format!("token={TOKEN}&next=//evil.example&csrf={csrf}"),
            ),
        )
        .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER);
        assert_eq!(ok.location(), "/", "never off-site");
        let set = ok
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("batchline_session="))
            .unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let session = ok.cookie("batchline_session").unwrap();
        assert!(!session.contains(TOKEN), "the cookie is not the token");
        let signed_in = Request::get("/events")
            .header(header::COOKIE, format!("batchline_session={session}"))
            .body(Body::empty())
            .unwrap();
        let page = send(&app, signed_in).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("Sign out"));
        let flipped = if session.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{flipped}", &session[..session.len() - 1]);
        let forged = Request::get("/events")
            .header(header::COOKIE, format!("batchline_session={forged}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&app, forged).await.status, StatusCode::SEE_OTHER);
    })
    .await;
}

#[tokio::test]
async fn cancel_asks_first_needs_its_token_and_ends_the_batch() {
    with_services(|s| async move {
        let app = s.app(None);
        let token = csrf_token(&app).await;
        let created = post_json(
            &app,
            "/api/batches",
            r#"{"event": "sum", "runs": 5000, "chunk_size": 1000, "count": 2, "name": "to-cancel"}"#,
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let ids: Vec<Uuid> = created.json()["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["batch_id"].as_str().unwrap().parse().unwrap())
            .collect();
        let (page_id, api_id) = (ids[0], ids[1]);

        // The batch page offers it; the link asks before anything happens.
        let page = get(&app, &format!("/batches/{page_id}")).await;
        assert!(page.body.contains(&format!("/batches/{page_id}/cancel")));
        let confirm = get(&app, &format!("/batches/{page_id}/cancel")).await;
        assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
        assert!(confirm.body.contains("Cancel the batch"), "{}", confirm.body);
        assert!(confirm.body.contains("name=\"csrf\""), "the form carries a token");
        assert!(s.store.cancelled_among(&[page_id]).await.unwrap().is_empty());

        // Without the token: refused, nothing cancelled.
        let uri = format!("/batches/{page_id}/cancel");
        let refused = send(&app, form_post(&uri, &token, "reason=x")).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(s.store.cancelled_among(&[page_id]).await.unwrap().is_empty());

        // With it: cancelled, with the reason, and the page says so.
        let body = format!("reason=by+mistake&csrf={token}");
        let done = send(&app, form_post(&uri, &token, &body)).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
        assert_eq!(done.location(), format!("/batches/{page_id}"));
        let cancelled = s.store.cancelled_among(&[page_id]).await.unwrap();
        assert_eq!(cancelled[0].reason, "by mistake");
        let page = get(&app, &format!("/batches/{page_id}")).await;
        assert!(page.body.contains("data-state=\"cancelling\""), "{}", page.body);
        assert!(!page.body.contains(&format!("/batches/{page_id}/cancel")));

        // The API: JSON only, first and second time, then final ones refused.
        let url = format!("/api/batches/{api_id}/cancel");
        let plain = send(
            &app,
            Request::post(&url)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("reason"))
                .unwrap(),
        )
        .await;
        assert_eq!(plain.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", plain.body);
        let first = post_json(&app, &url, r#"{"reason": "api"}"#).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        assert_eq!(first.json()["already"], false);
        assert_eq!(first.json()["chunks_stopped"], 5);
        let again = post_json(&app, &url, "").await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(again.json()["already"], true);
        let unknown = post_json(&app, &format!("/api/batches/{}/cancel", Uuid::new_v4()), "").await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
        let status = get(&app, &format!("/api/batches/{api_id}")).await.json();
        assert_eq!(status["state"], "cancelling");
        let listed = get(&app, "/api/batches?verdict=cancelled").await.json();
        assert_eq!(listed["total"], 2, "{listed}");
    })
    .await;
}

#[tokio::test]
async fn wrong_logins_are_throttled() {
    with_services(|s| async move {
        let app = s.app(Some(TOKEN));
        let login = get(&app, "/login").await;
        let csrf = login.cookie("batchline_csrf").unwrap();
        let attempt = |token: &str| {
            form_post(
                "/login",
                &csrf,
                &format!("token={token}&next=/&csrf={csrf}"),
            )
        };
        // Forty guesses as fast as they can go: after the first few, refused
        // unchecked, with the time to wait.
        let mut statuses = Vec::new();
        let mut retry_after = None;
        for i in 0..40 {
            let answer = send(&app, attempt(&format!("guess-{i}"))).await;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                retry_after = answer.headers.get(header::RETRY_AFTER).cloned();
                assert!(
                    answer.body.contains("Too many wrong tokens"),
                    "{}",
                    answer.body
                );
            }
            statuses.push(answer.status);
        }
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count();
        let throttled = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(refused + throttled, 40, "{statuses:?}");
        // Three free tries and the one that starts the wait; each try
        // during the wait makes it longer, so none of the rest is checked.
        assert_eq!(refused, 4, "{statuses:?}");
        assert!(retry_after.is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
        // During the wait even the right token waits (a guess tells nothing).
        let right = send(&app, attempt(TOKEN)).await;
        assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(right.cookie("batchline_session").is_none());
    })
    .await;
}

/// Makes the workload's measured rate `seconds_per_run`, as executors'
/// charges would: one chunk of a batch of it, charged that much a run.
async fn measure(s: &Services, batch: Uuid, runs_in_chunk: f64, seconds_per_run: f64) {
    s.store
        .charge(&[store::share::Charge {
            batch_id: batch,
            chunk: 0,
            seconds: runs_in_chunk * seconds_per_run,
        }])
        .await
        .unwrap();
}

#[tokio::test]
async fn the_queue_shows_tenants_priorities_and_the_pool() {
    with_services(|s| async move {
        let app = s.app(None);
        // Nothing queued, no executor: both say so.
        let empty = get(&app, "/api/queue").await;
        assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
        assert_eq!(
            empty.json(),
            json!({"executor_threads": 0, "chunks_running": 0, "batches": []})
        );
        let page = get(&app, "/queue").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("No executor is running"), "{}", page.body);
        assert!(page.body.contains("No batch is waiting or running"));
        assert!(!page.body.contains("data-live"), "an empty queue does not refresh");
        assert!(
            page.body.contains(r#"<a class="active" href="/queue" aria-current="page">Queue</a>"#),
            "the navigation has it: {}",
            page.body
        );

        // Two tenants, priorities and a weight, through the API and the form.
        for body in [
            json!({"event": "sum", "runs": 3000, "chunk_size": 1000, "name": "acme-high", "tenant": "acme", "priority": "high"}),
            json!({"event": "sum", "runs": 3000, "chunk_size": 1000, "name": "acme-light", "tenant": "acme", "weight": 0.5}),
        ] {
            let created = post_json(&app, "/api/batches", body.to_string()).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
            let estimate = &created.json()["estimate"];
            assert_eq!(estimate["executor_threads"], 0, "{estimate}");
            assert_eq!(estimate["seconds"], Value::Null, "no executors, no estimate");
        }
        let token = csrf_token(&app).await;
        let form = format!(
            "event=sum&runs=2000&chunk_size=1000&count=1&name=<b>bold</b>&tenant=lab&priority=low&weight=&csrf={token}"
        );
        let answer = send(&app, form_post("/batches", &token, &form)).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        s.store.executor_heartbeat("executor-test-1", 3).await.unwrap();
        s.store.executor_heartbeat("executor-test-2", 1).await.unwrap();

        let view = get(&app, "/api/queue").await.json();
        assert_eq!(view["executor_threads"], 4, "{view}");
        let batches = view["batches"].as_array().unwrap();
        assert_eq!(batches.len(), 3, "{view}");
        let by_name = |n: &str| {
            batches
                .iter()
                .find(|b| b["name"] == n)
                .unwrap_or_else(|| panic!("{n} in {view}"))
                .clone()
        };
        let high = by_name("acme-high");
        assert_eq!(
            (&high["tenant"], &high["priority"], &high["weight"], &high["runs"]),
            (&json!("acme"), &json!("high"), &json!(4.0), &json!(3000))
        );
        assert_eq!(by_name("acme-light")["priority"], "weight 0.5");
        let low = by_name("<b>bold</b>");
        assert_eq!((&low["tenant"], &low["priority"]), (&json!("lab"), &json!("low")));
        let positions: Vec<i64> = batches.iter().map(|b| b["position"].as_i64().unwrap()).collect();
        assert_eq!(positions, [1, 2, 3]);
        for b in batches {
            assert!(b["left_s"].as_f64().is_some_and(|s| s > 0.0), "{b}");
            let chunks = ["chunks_waiting", "chunks_queued", "chunks_running"]
                .map(|k| b[k].as_i64().unwrap())
                .iter()
                .sum::<i64>();
            assert_eq!(chunks * 1000, b["runs"].as_i64().unwrap(), "{b}");
        }

        // The page: the same rows, escaped, refreshing itself; the live part alone.
        let page = get(&app, "/queue").await;
        assert!(page.body.contains("4 executor threads"), "{}", page.body);
        assert!(page.body.contains("acme-high") && page.body.contains("weight 0.5"));
        assert!(page.body.contains("&lt;b&gt;bold&lt;/b&gt;"), "escaped: {}", page.body);
        assert!(!page.body.contains("<b>bold"));
        assert!(page.body.contains(r#"data-live="/queue/live""#));
        let live = get(&app, "/queue/live").await;
        assert!(live.body.starts_with(r#"<div class="live" id="queue""#), "{}", live.body);
        assert!(!live.body.contains("<html"));

        // A batch page shows its place in the queue.
        let id = by_name("acme-high")["id"].as_str().unwrap().to_string();
        let page = get(&app, &format!("/batches/{id}")).await;
        assert!(page.body.contains("in the queue</a> · tenant acme · high"), "{}", page.body);
    })
    .await;
}

#[tokio::test]
async fn bad_tenants_priorities_and_weights_are_refused_with_every_problem() {
    with_services(|s| async move {
        let app = s.app(None);
        for (body, says) in [
            (json!({"runs": 10, "tenant": "a b"}), "Tenant \"a b\" has ' '"),
            (json!({"runs": 10, "priority": "urgent"}), "Priority \"urgent\" is not one of high, normal, low"),
            (json!({"runs": 10, "weight": 1000}), "Weight \"1000\" is not a number from 0.01 to 100"),
            (json!({"runs": 10, "priority": "high", "weight": 2}), "Give a priority or a weight, not both."),
            (json!({"runs": 10, "weight": "2"}), "invalid type"),
        ] {
            let answer = post_json(&app, "/api/batches", body.to_string()).await;
            assert!(answer.status.is_client_error(), "{body}: {}", answer.status);
            let error = answer.json()["error"].as_str().unwrap().to_string();
            assert!(error.contains(says), "{body}: {error}");
        }
        // With a limit problem too: both listed.
        let answer = post_json(
            &app,
            "/api/batches",
            json!({"runs": 0, "tenant": "x/y"}).to_string(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(answer.json()["problems"].as_array().unwrap().len(), 2, "{}", answer.body);

        // The form: each problem in its words, the values kept.
        let token = csrf_token(&app).await;
        let form = format!(
            "event=sum&runs=100&chunk_size=10&count=1&tenant=a%20b&priority=high&weight=2&csrf={token}"
        );
        let page = send(&app, form_post("/batches", &token, &form)).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.body.contains("Tenant &quot;a b&quot; has"), "{}", page.body);
        assert!(page.body.contains("Give a priority or a weight, not both."));
        assert!(page.body.contains(r#"value="a b""#), "the tenant typed");
        assert!(page.body.contains(r#"<option value="high" selected>"#), "{}", page.body);
        assert!(s.store.progress(None, 10).await.unwrap().is_empty(), "nothing was created");
    })
    .await;
}

#[tokio::test]
async fn over_an_hour_starts_only_once_confirmed() {
    with_services(|s| async move {
        let app = s.app(None);
        // A first sum batch, measured at 10 ms a run on a pool of 1 thread:
        // 100,000 runs of sum are 1,000 s alone, and beside it a half: 2,000 s.
        let first = post_json(
            &app,
            "/api/batches",
            json!({"event": "sum", "runs": 1000, "chunk_size": 1000, "name": "first"}).to_string(),
        )
        .await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
        let first_id: Uuid = first.json()["batches"][0]["batch_id"].as_str().unwrap().parse().unwrap();
        measure(&s, first_id, 1000.0, 0.01).await;
        s.store.executor_heartbeat("executor-test", 1).await.unwrap();

        let short = json!({"event": "sum", "runs": 100_000, "chunk_size": 10_000, "name": "short"});
        let created = post_json(&app, "/api/batches", short.to_string()).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let estimate = &created.json()["estimate"];
        assert_eq!(estimate["rate_source"], "measured", "{estimate}");
        assert_eq!(estimate["executor_threads"], 1);
        assert_eq!(estimate["needs_confirmation"], false);
        let seconds = estimate["seconds"].as_f64().unwrap();
        assert!((seconds - 2_000.0).abs() < 1.0, "{estimate}");

        // Three of them beside two batches of weight 1: 3,000 s of work at
        // 3/5 of the pool, 5,000 s: over an hour, refused with the estimate.
        let long = json!({"event": "sum", "runs": 100_000, "chunk_size": 10_000, "count": 3, "name": "long"});
        let refused = post_json(&app, "/api/batches", long.to_string()).await;
        assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
        let body = refused.json();
        assert!(body["error"].as_str().unwrap().contains("\"confirm\": true"), "{body}");
        assert_eq!(body["estimate"]["needs_confirmation"], true, "{body}");
        assert!(body["estimate"]["seconds"].as_f64().unwrap() > 3_600.0, "{body}");
        assert_eq!(s.store.progress(None, 10).await.unwrap().len(), 2, "nothing started");

        // The form: a confirmation step, nothing started; ticked, it starts.
        let token = csrf_token(&app).await;
        let form = format!("event=sum&runs=100000&chunk_size=10000&count=3&name=long&csrf={token}");
        let step = send(&app, form_post("/batches", &token, &form)).await;
        assert_eq!(step.status, StatusCode::OK, "{}", step.body);
        assert!(step.body.contains("These 3 batches would run for about <span class=\"nowrap\">"), "{}", step.body);
        assert!(step.body.contains(r#"name="confirm" value="yes""#), "{}", step.body);
        assert!(step.body.contains(r#"value="100000""#), "the values stay");
        assert_eq!(s.store.progress(None, 10).await.unwrap().len(), 2, "nothing started");
        let started = send(&app, form_post("/batches", &token, &format!("{form}&confirm=yes"))).await;
        assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
        let location = started.location().to_string();
        assert!(location.starts_with("/batches?started=1&estimate_s="), "{location}");
        let landed = get(&app, &location).await;
        assert!(landed.body.contains("Estimated run time: about"), "{}", landed.body);
        assert_eq!(s.store.progress(None, 10).await.unwrap().len(), 5);

        // The API with "confirm": true starts it too.
        let mut confirmed = long.clone();
        confirmed["confirm"] = json!(true);
        let created = post_json(&app, "/api/batches", confirmed.to_string()).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.json()["estimate"]["needs_confirmation"], true);
        assert_eq!(s.store.progress(None, 10).await.unwrap().len(), 8);
    })
    .await;
}
