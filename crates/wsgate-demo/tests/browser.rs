//! The demo in a real browser: headless Chromium from Debian's packages,
//! driven through chromedriver (WebDriver, with fantoccini: a maintained
//! async client that needs no browser download and no Node.js). Every
//! header the gateway judges here is the one Chromium itself sent.
//!
//! If Chromium or chromedriver is missing the test fails and says how to
//! install them; `scripts/test` installs both.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use wsgate_demo::{Demo, Options, url};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for something the page shows.
const PAGE_WAIT: Duration = Duration::from_secs(20);

/// chromedriver and the browser session it runs; both end when dropped.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's {package} package (apt-get install chromium chromium-driver); scripts/test does"
            );
        }
        let mut driver = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        // Its readiness line names the port it took.
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|p| p.trim_end_matches('.').parse::<u16>().ok())
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = tokio::time::timeout(wsgate_testkit::WAIT, rx)
            .await
            .expect("chromedriver did not say it was ready")
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1100,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let client = ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("Chromium did not start under chromedriver: {e}"));
        Browser {
            client: Some(client),
            driver,
            _profile: profile,
        }
    }

    fn page(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Waits until the element `id` shows text starting with `prefix`; returns its text.
    async fn shows(&self, id: &str, prefix: &str) -> String {
        let xpath = format!("//*[@id='{id}' and starts-with(normalize-space(.), \"{prefix}\")]");
        match self
            .page()
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::XPath(&xpath))
            .await
        {
            Ok(e) => e.text().await.unwrap(),
            Err(err) => {
                let now = match self.page().find(Locator::Id(id)).await {
                    Ok(e) => e.text().await.unwrap_or_default(),
                    Err(_) => "(no such element)".into(),
                };
                panic!("#{id} never showed {prefix:?} ({err}); it shows {now:?}")
            }
        }
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

/// The next audit event `want` accepts.
async fn event(
    events: &mut tokio::sync::broadcast::Receiver<Arc<wsgate_gateway::AuditEvent>>,
    want: impl Fn(&wsgate_gateway::AuditEvent) -> bool,
) -> Arc<wsgate_gateway::AuditEvent> {
    tokio::time::timeout(PAGE_WAIT, async {
        loop {
            let ev = events.recv().await.unwrap();
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("no such audit event")
}

#[tokio::test]
async fn in_chromium_the_chat_works_the_hijack_is_refused_and_csp_stops_the_injected_socket() {
    let demo = Demo::start(Options::default()).await.unwrap();
    let mut events = demo.audit().subscribe();
    let browser = Browser::start().await;
    let page = browser.page();
    let chat = url("http", demo.gateway, "/");
    let attacker = url("http", demo.attacker, "");

    // 1. The chat's own page logs in, connects through the gateway and talks.
    page.goto(&chat).await.unwrap();
    page.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id("login-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.shows("status", "connected").await;
    let ev = event(&mut events, |e| e.event == "handshake").await;
    assert_eq!(ev.decision, Some("admitted"));
    assert_eq!(ev.user.as_deref(), Some("alice"));
    assert_eq!(
        ev.origin.as_deref(),
        Some(url("http", demo.gateway, "").as_str())
    );
    let text = page.find(Locator::Id("text")).await.unwrap();
    text.send_keys("hello from Chromium").await.unwrap();
    page.find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let xpath = "//ul[@id='log']/li[contains(., 'alice: hello from Chromium')]";
    page.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::XPath(xpath))
        .await
        .expect("the message came back through the gateway");

    // 2, 3 and 5. The attacker's page, in the same browser, with the victim's cookie.
    page.goto(&format!("{attacker}/")).await.unwrap();
    browser.shows("via-gateway", "refused").await;
    browser.shows("sandboxed", "refused").await;
    // Without the gateway the same attack works: the page reads the chat.
    browser.shows("direct", "hijacked").await;
    let stolen = page.find(Locator::Id("stolen")).await.unwrap();
    let stolen = stolen.text().await.unwrap();
    assert!(stolen.contains("launch code"), "{stolen}");
    let refused = event(&mut events, |e| {
        e.event == "handshake" && e.origin.as_deref() == Some(attacker.as_str())
    })
    .await;
    assert_eq!(
        (refused.decision, refused.reason),
        (Some("refused"), Some("origin_not_allowed"))
    );
    let sandboxed = event(&mut events, |e| {
        e.event == "handshake" && e.origin.as_deref() == Some("null")
    })
    .await;
    assert_eq!(sandboxed.reason, Some("origin_not_allowed"));

    // 6. The attacker's page after the attempt, kept as an artifact.
    let png = page.screenshot().await.unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("demo-attacker.png"), &png).unwrap();

    // 4. An injected script on the chat page cannot reach its command server.
    page.goto(&chat).await.unwrap();
    browser.shows("status", "connected").await;
    page.find(Locator::Id("inject"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.shows("inject-result", "Blocked").await;
    let report = event(&mut events, |e| e.event == "csp_violation").await;
    assert_eq!(
        report.blocked.as_deref(),
        Some(url("ws", demo.c2, "/bot").as_str())
    );
    assert_eq!(report.decision, Some("blocked"));
    assert_eq!(demo.c2_hits(), 0);
    let png = page.screenshot().await.unwrap();
    std::fs::write(dir.join("demo-chat.png"), &png).unwrap();
    // The same page served by the application alone has no policy: the script gets through.
    page.goto(&url("http", demo.backend, "/")).await.unwrap();
    page.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id("inject"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .shows("inject-result", "Connected to the command server")
        .await;
    assert_eq!(demo.c2_hits(), 1);

    browser.close().await;
}
