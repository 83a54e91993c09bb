//! The web console end to end, as a person uses it: the real binary's
//! executor, aggregator, verifier and `web` on an isolated stack, driven by
//! a real headless Chromium through chromedriver (WebDriver). Paste a
//! broken event and see where it is broken, save a good one, start a batch
//! from the form, watch the batch page update itself to SUCCESS, and find
//! the points histograms drawn, ties shown as ties; then compare it with
//! its sibling and follow a broken link. At a true phone width (Chrome's
//! device metrics: a window does not lay out below about 500 px) nothing
//! is wider than the screen and chart text stays readable. Screenshots at
//! desktop and phone widths go to the stack's dir (and to
//! `WEB_SCREENSHOT_DIR` when set).
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
use fault_tolerance::{Stack, run_cli, twins_event};
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

/// A Chrome DevTools command, through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// The narrowest width a window really lays out at; below it, a phone's
/// device metrics are set instead.
const MIN_WINDOW: u32 = 600;

/// Lays the page out `width` × `height` CSS pixels: a window for desktop
/// widths, a phone's device metrics (touch, viewport meta) below.
async fn viewport(c: &Client, width: u32, height: u32) {
    let cdp = |cmd, params| c.issue_cmd(Cdp { cmd, params });
    if width >= MIN_WINDOW {
        cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await
            .expect("clear the device metrics");
        c.set_window_size(width, height).await.expect("resize");
    } else {
        let metrics =
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": true });
        cdp("Emulation.setDeviceMetricsOverride", metrics)
            .await
            .expect("set a phone's device metrics");
    }
}

/// A whole-page screenshot at `width`: the viewport grows to the page,
/// then goes back to `width` × 900.
async fn screenshot(c: &Client, width: u32, to: &[PathBuf]) {
    viewport(c, width, 900).await;
    let height = c
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .ok()
        .and_then(|v| v.as_u64())
        .unwrap_or(900)
        .clamp(600, 8000) as u32;
    viewport(c, width, height).await;
    let png = c.screenshot().await.expect("a screenshot");
    for path in to {
        std::fs::write(path, &png).expect("write the screenshot");
    }
    viewport(c, width, 900).await;
}

/// How much wider than the viewport the page is (0 when it fits).
async fn overflow(c: &Client) -> i64 {
    c.execute(
        "return document.documentElement.scrollWidth - window.innerWidth;",
        vec![],
    )
    .await
    .ok()
    .and_then(|v| v.as_i64())
    .expect("the page's width")
}

/// The smallest on-screen font size, in CSS pixels, of the text that `css`
/// selects: SVG text scales with its chart.
async fn smallest_text(c: &Client, css: &str) -> f64 {
    let script = "
        let least = Infinity;
        for (const t of document.querySelectorAll(arguments[0])) {
            const svg = t.ownerSVGElement;
            const scale = svg ? svg.getBoundingClientRect().width / svg.viewBox.baseVal.width : 1;
            least = Math.min(least, parseFloat(getComputedStyle(t).fontSize) * scale);
        }
        return least === Infinity ? -1 : least;";
    let least = c
        .execute(script, vec![json!(css)])
        .await
        .ok()
        .and_then(|v| v.as_f64())
        .expect("font sizes");
    assert!(least > 0.0, "no text at {css}");
    least
}

/// Whether the element at `css` is wholly inside the viewport and its
/// box's scroll container (not cut off).
async fn wholly_visible(c: &Client, css: &str) -> bool {
    let script = "
        const e = document.querySelector(arguments[0]);
        const r = e.getBoundingClientRect();
        const box = e.parentElement;
        return r.left >= 0 && r.right <= window.innerWidth + 0.5
            && box.scrollWidth <= box.clientWidth + 1;";
    c.execute(script, vec![json!(css)])
        .await
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or_else(|| panic!("no {css}"))
}

/// Phone-width checks on the current page: nothing wider than the screen,
/// chart text at least `min_px`.
async fn fits_a_phone(c: &Client, what: &str, charts: &[&str]) {
    viewport(c, PHONE, 844).await;
    assert_eq!(
        overflow(c).await,
        0,
        "{what} is wider than a {PHONE} px phone"
    );
    for css in charts {
        let px = smallest_text(c, css).await;
        assert!(
            px >= MIN_TEXT_PX,
            "{what}: text of {css} is {px:.1} px on a {PHONE} px phone"
        );
    }
    viewport(c, 1280, 900).await;
}

/// A phone's width in CSS pixels (an iPhone 14's).
const PHONE: u32 = 390;
/// The smallest chart text a phone may show.
const MIN_TEXT_PX: f64 = 10.0;

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
    stack.spawn(
        "web",
        "web",
        &[("WEB_ADDR", &format!("localhost:{web_port}"))],
    );
    wait_port(&web_addr, Duration::from_secs(60));
    let base = format!("http://{web_addr}");

    let dir = stack.dir().to_path_buf();
    let driver = Driver::start(&dir.join("logs").join("chromedriver.log"));
    let profile = tempfile::tempdir().expect("a browser profile dir");
    let shots = std::env::var_os("WEB_SCREENSHOT_DIR").map(PathBuf::from);
    if let Some(d) = &shots {
        std::fs::create_dir_all(d).expect("WEB_SCREENSHOT_DIR");
    }
    let shot = |name: &str| {
        let mut to = vec![dir.join(name)];
        to.extend(shots.as_ref().map(|d| d.join(name)));
        to
    };

    // Ties by the hundred; a long name (the form must still fit a phone)
    // with markup in it (shown as text).
    let event = twins_event("Browser <Twins> League, a name of quite some length");
    let event_text = serde_json::to_string_pretty(&event).expect("event JSON");

    let batch_ids: Vec<Uuid> = stack.block_on(async {
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

        // The built-in event is offered as a template.
        click(&c, "a[href='/events?template=builtin#add-event']").await;
        let template = c
            .find(Locator::Css("textarea[name='event']"))
            .await
            .expect("the text box")
            .prop("value")
            .await
            .expect("its text")
            .unwrap_or_default();
        assert!(
            template.contains("\"Spring League Bingo\""),
            "{template:.200}"
        );

        // A name past the limit: refused, saying the limit.
        let mut long = event.clone();
        long.name = "x".repeat(workload::MAX_NAME_CHARS + 1);
        paste(
            &c,
            "textarea[name='event']",
            &serde_json::to_string(&long).unwrap(),
        )
        .await;
        click(&c, "button[value='check']").await;
        let problem = text_of(&c, ".problems").await;
        assert!(
            problem.contains("name: must be at most 80 characters, not 81"),
            "{problem}"
        );

        // A good one: checked, then saved, then shown as its board.
        paste(&c, "textarea[name='event']", &event_text).await;
        click(&c, "button[value='check']").await;
        assert!(
            text_of(&c, "[role='status']")
                .await
                .contains(&format!("Valid: {}", event.name))
        );
        click(&c, "button[value='save']").await;
        assert_eq!(text_of(&c, "h1").await, event.name);
        let tiles = c
            .find_all(Locator::Css(".board .tile"))
            .await
            .expect("tiles");
        assert_eq!(tiles.len(), event.rows.len() * 4);

        // The form, with this long name in its list, fits a phone.
        click(&c, "a.button[href^='/batches/new']").await;
        let chunk = c
            .find(Locator::Css("[name='chunk_size']"))
            .await
            .expect("chunk size")
            .prop("value")
            .await
            .expect("its value");
        assert_eq!(
            chunk.as_deref(),
            Some("10000"),
            "the CLI's default chunk size"
        );
        fits_a_phone(&c, "the new-batch form", &[]).await;
        screenshot(&c, PHONE, &shot("web-new-batch-phone.png")).await;

        // Everything wrong at once: every problem in one answer, in the
        // console's words.
        fill(&c, "runs", "lots").await;
        fill(&c, "chunk_size", "0").await;
        fill(&c, "count", "99").await;
        fill(&c, "name", "a [bracketed] name").await;
        click(&c, "form.stack button[type='submit']").await;
        let problems = text_of(&c, ".problems").await;
        assert_eq!(
            c.find_all(Locator::Css(".problems li"))
                .await
                .expect("items")
                .len(),
            4,
            "{problems}"
        );
        assert!(
            problems.contains("Runs per batch: enter a whole number")
                && problems.contains("Chunk size: at least 1")
                && problems.contains("Batches: between 1 and 10, not 99")
                && problems.contains("Name must not contain [ or ]"),
            "{problems}"
        );
        assert!(
            !problems.contains("--"),
            "CLI words in the console: {problems}"
        );

        // Two batches of one submission: listed in their order.
        fill(&c, "runs", "2000").await;
        fill(&c, "chunk_size", "500").await;
        fill(&c, "seed", "11").await;
        fill(&c, "count", "2").await;
        fill(&c, "name", "browser-e2e").await;
        click(&c, "form.stack button[type='submit']").await;
        // The list may still be loading after the click.
        c.wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("table.batches td.name a"))
            .await
            .expect("the batch list after starting them");
        let names = c
            .find_all(Locator::Css("table.batches td.name a"))
            .await
            .expect("the batch list");
        let mut listed = Vec::new();
        for n in &names {
            listed.push(n.text().await.expect("a name"));
        }
        assert_eq!(listed, ["browser-e2e-1", "browser-e2e-2"]);
        click(&c, "table.batches td.name a").await;
        let url = c.current_url().await.expect("the batch page's URL");
        let id: Uuid = url
            .path()
            .strip_prefix("/batches/")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("the list should lead to the batch page, not {url}"));

        // The page updates itself (no reload here) until the verdict.
        c.wait()
            .at_most(TIMEOUT)
            .for_element(Locator::Css("#batch[data-state='SUCCESS']"))
            .await
            .unwrap_or_else(|e| {
                panic!("the batch page never showed SUCCESS within {TIMEOUT:?}: {e}")
            });
        let verdict = text_of(&c, "p.verdict").await;
        assert!(verdict.starts_with("SUCCESS [browser-e2e-1]"), "{verdict}");
        assert!(text_of(&c, "dl.facts").await.contains(&event.name));
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

        // Ties: a bar of their own, a column, a sentence.
        let rates = text_of(&c, ".rates").await;
        assert!(rates.contains("Tied (no winner)"), "{rates}");
        assert!(text_of(&c, "table.results").await.contains("TIE RATE"));
        let note = text_of(&c, "p.note").await;
        assert!(note.contains("were tied"), "{note}");
        fits_a_phone(
            &c,
            "the batch page",
            &["svg.histogram text", "svg.rowreach text"],
        )
        .await;
        screenshot(&c, 1280, &shot("web-console.png")).await;
        screenshot(&c, PHONE, &shot("web-console-phone.png")).await;

        // Compare: the link leads to a list to pick from, not a dead end.
        click(&c, "a[href^='/compare?b=']").await;
        assert!(
            text_of(&c, "h1")
                .await
                .starts_with("Compare browser-e2e-1 with")
        );
        click(&c, "input[type='checkbox'][name='b']").await;
        click(&c, "form[action='/compare'] button[type='submit']").await;
        c.wait()
            .at_most(TIMEOUT)
            .for_element(Locator::Css("svg.overlay"))
            .await
            .expect("the compare page's charts");
        let page = text_of(&c, "main").await;
        assert!(page.contains("Tied (no winner)"), "{page}");
        fits_a_phone(&c, "the compare page", &["svg.overlay text"]).await;
        viewport(&c, PHONE, 844).await;
        assert!(
            wholly_visible(&c, "svg.overlay").await,
            "the overlaid histograms are cut off on a phone"
        );
        screenshot(&c, PHONE, &shot("web-compare-phone.png")).await;
        screenshot(&c, 1280, &shot("web-compare.png")).await;

        // A malformed id: the console's own error page.
        c.goto(&format!("{base}/batches/not-a-batch"))
            .await
            .expect("open a broken link");
        assert_eq!(text_of(&c, "h1").await, "404 Not Found");
        assert!(text_of(&c, "p.error").await.contains("no valid id"));

        let other = c
            .find(Locator::Css("header.top nav a[href='/batches']"))
            .await
            .is_ok();
        assert!(other, "the error page has the console's navigation");
        c.close().await.expect("close the browser");
        vec![id]
    });

    // What the page said is what the pipeline did.
    let verdicts = stack.wait_for_verdicts(&batch_ids, TIMEOUT);
    assert!(verdicts[0].success, "{:?}", verdicts[0]);
    stack.assert_batch_exact(batch_ids[0]);
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
