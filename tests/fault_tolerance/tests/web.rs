//! The web console end to end, as a person uses it: the real binary's
//! executor, aggregator, verifier and `web` on an isolated stack, driven by
//! a real headless Chromium through chromedriver (WebDriver). Paste a
//! broken event and see where it is broken, save a good one, start a batch
//! from the form, watch the batch page update itself to SUCCESS, and find
//! the points histograms drawn. Screenshots at desktop and phone widths go
//! to the stack's dir (and to `WEB_SCREENSHOT_DIR` when set).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them): without them the test fails saying so. `CHROMEDRIVER` and
//! `CHROME_BIN` override where they are.

// Helpers outside #[test] fns: clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use fault_tolerance::services::wait_port;
use fault_tolerance::{Stack, run_cli};
use serde_json::json;
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(180);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(log: &Path) -> Driver {
        let bin = env_or("CHROMEDRIVER", "chromedriver");
        let port = free_port();
        let log = std::fs::File::create(log).expect("the chromedriver log file");
        let child = Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the browser test cannot start {bin}: {e}; install Debian's chromium and \
                     chromium-driver (apt-get install -y chromium chromium-driver) or set CHROMEDRIVER"
                )
            });
        let addr = format!("127.0.0.1:{port}");
        wait_port(&addr, Duration::from_secs(30));
        Driver {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fresh profile.
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let chrome = env_or("CHROME_BIN", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chrome,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1280,900",
            ],
        }),
    );
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps);
    match tokio::time::timeout(Duration::from_secs(60), builder.connect(&driver.url)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => panic!(
            "cannot start headless Chromium ({chrome}) through chromedriver: {e}; \
             install Debian's chromium and chromium-driver, or set CHROME_BIN"
        ),
        Err(_) => panic!("headless Chromium ({chrome}) did not start within 60 s"),
    }
}

/// Sets a text field's value as a paste would (typing 40 kB of JSON key
/// by key would take minutes).
async fn paste(c: &Client, css: &str, text: &str) {
    let field = c.find(Locator::Css(css)).await.expect("the field");
    c.execute(
        "arguments[0].value = arguments[1];",
        vec![
            serde_json::to_value(&field).expect("element ref"),
            json!(text),
        ],
    )
    .await
    .expect("paste into the field");
}

async fn fill(c: &Client, name: &str, value: &str) {
    let field = c
        .find(Locator::Css(&format!("[name='{name}']")))
        .await
        .unwrap_or_else(|e| panic!("no field {name}: {e}"));
    field.clear().await.expect("clear the field");
    field.send_keys(value).await.expect("type into the field");
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("nothing to click at {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn text_of(c: &Client, css: &str) -> String {
    // Live updates replace parts of the page: an element found a moment
    // ago may be gone when its text is read; find it again.
    for _ in 0..20 {
        // Waits: after a click the next page may still be loading.
        let found = c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await;
        let Ok(element) = found else {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let page = c.source().await.unwrap_or_default();
            panic!("no {css} on {url}:\n{page}");
        };
        match element.text().await {
            Ok(text) => return text,
            Err(CmdError::Standard(e)) if e.error == ErrorStatus::StaleElementReference => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("text of {css}: {e}"),
        }
    }
    panic!("{css} kept being replaced while its text was read");
}

/// A whole-page screenshot at `width`: the window grows to the page.
async fn screenshot(c: &Client, width: u32, to: &[PathBuf]) {
    c.set_window_size(width, 900).await.expect("resize");
    let height = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(900)
        .clamp(600, 6000) as u32;
    c.set_window_size(width, height).await.expect("resize");
    let png = c.screenshot().await.expect("a screenshot");
    for path in to {
        std::fs::write(path, &png).expect("write the screenshot");
    }
}

fn broken_event() -> &'static str {
    "{\n  \"name\": \"Broken\",\n  \"start\": {\"day\": \"wed\", \"time\": \"18:00\"},\n  \"duration_seconds\": 172800,\n  \"unlock_threshold\": 5,,\n}"
}

#[test]
fn a_person_adds_an_event_starts_a_batch_and_watches_it_succeed() {
    let web_port = free_port();
    let web_addr = format!("127.0.0.1:{web_port}");
    let mut stack = Stack::new();
    stack.spawn("worker-1", "executor", &[]);
    stack.spawn("worker-2", "aggregator", &[]);
    stack.spawn("worker-3", "verifier", &[]);
    stack.spawn("web", "web", &[("WEB_ADDR", &web_addr)]);
    wait_port(&web_addr, Duration::from_secs(60));
    let base = format!("http://{web_addr}");

    let dir = stack.dir().to_path_buf();
    let driver = Driver::start(&dir.join("logs").join("chromedriver.log"));
    let profile = tempfile::tempdir().expect("a browser profile dir");
    let shots = std::env::var_os("WEB_SCREENSHOT_DIR").map(PathBuf::from);

    let mut event = workload::Event::spring_league();
    event.name = "Browser <Spring> League".into();
    let event_text = serde_json::to_string_pretty(&event).expect("event JSON");

    let batch_id: Uuid = stack.block_on(async {
        let c = browser(&driver, profile.path()).await;

        // A broken event: the parser's line and column, nothing saved.
        c.goto(&format!("{base}/events"))
            .await
            .expect("open the events page");
        paste(&c, "textarea[name='event']", broken_event()).await;
        click(&c, "button[value='check']").await;
        let problem = text_of(&c, ".problems").await;
        assert!(problem.contains("line 5, column 25"), "{problem}");
        assert!(
            text_of(&c, "section:last-of-type")
                .await
                .contains("No saved events")
        );

        // A good one: checked, then saved, then shown as its board.
        paste(&c, "textarea[name='event']", &event_text).await;
        click(&c, "button[value='check']").await;
        assert!(
            text_of(&c, "[role='status']")
                .await
                .contains("Valid: Browser <Spring> League")
        );
        click(&c, "button[value='save']").await;
        assert_eq!(text_of(&c, "h1").await, "Browser <Spring> League");
        let tiles = c
            .find_all(Locator::Css(".board .tile"))
            .await
            .expect("tiles");
        assert_eq!(tiles.len(), event.rows.len() * 4);

        // The form: this event, a small batch.
        click(&c, "a.button[href^='/batches/new']").await;
        fill(&c, "runs", "2000").await;
        fill(&c, "chunk_size", "500").await;
        fill(&c, "seed", "11").await;
        fill(&c, "name", "browser-e2e").await;
        click(&c, "form.stack button[type='submit']").await;
        let url = c.current_url().await.expect("the batch page's URL");
        let id: Uuid = url
            .path()
            .strip_prefix("/batches/")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("the form should lead to the batch page, not {url}"));

        // The page updates itself (no reload here) until the verdict.
        c.wait()
            .at_most(TIMEOUT)
            .for_element(Locator::Css("#batch[data-state='SUCCESS']"))
            .await
            .unwrap_or_else(|e| {
                panic!("the batch page never showed SUCCESS within {TIMEOUT:?}: {e}")
            });
        let verdict = text_of(&c, "p.verdict").await;
        assert!(verdict.starts_with("SUCCESS [browser-e2e]"), "{verdict}");
        assert!(
            text_of(&c, "dl.facts")
                .await
                .contains("Browser <Spring> League")
        );
        let charts = c
            .find_all(Locator::Css("svg.histogram"))
            .await
            .expect("histograms");
        assert_eq!(charts.len(), event.teams.len(), "one histogram per team");
        let bars = c
            .find_all(Locator::Css("svg.histogram rect.bar"))
            .await
            .expect("bars");
        assert!(bars.len() >= 2, "the histograms have bars: {}", bars.len());
        let height = bars[0]
            .attr("height")
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        assert!(
            height.parse::<f64>().is_ok_and(|h| h >= 0.0),
            "bar height {height:?}"
        );

        let mut desktop = vec![dir.join("web-console.png")];
        let mut phone = vec![dir.join("web-console-phone.png")];
        if let Some(d) = &shots {
            std::fs::create_dir_all(d).expect("WEB_SCREENSHOT_DIR");
            desktop.push(d.join("web-console.png"));
            phone.push(d.join("web-console-phone.png"));
        }
        screenshot(&c, 1280, &desktop).await;
        screenshot(&c, 390, &phone).await;
        c.close().await.expect("close the browser");
        id
    });

    // What the page said is what the pipeline did.
    let verdicts = stack.wait_for_verdicts(&[batch_id], TIMEOUT);
    assert!(verdicts[0].success, "{:?}", verdicts[0]);
    stack.assert_batch_exact(batch_id);
}

#[test]
fn a_public_address_needs_a_token() {
    let env = vec![
        ("WEB_ADDR".to_string(), "0.0.0.0:0".to_string()),
        (
            "DATABASE_URL".to_string(),
            "postgres://nobody@127.0.0.1:1/none".to_string(),
        ),
    ];
    let out = run_cli(&["web"], &env, Duration::from_secs(60));
    assert!(!out.success(), "{out:?}");
    let errors: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {}", out.stderr);
    assert!(
        errors[0].contains("not a loopback address") && errors[0].contains("WEB_TOKEN"),
        "{}",
        errors[0]
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}
