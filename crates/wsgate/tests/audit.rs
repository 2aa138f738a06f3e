//! `wsgate audit` as operators run it: exit codes 0, 1 and 2, the formats,
//! and a wss endpoint whose certificate does not verify.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::process::{Command, Output};

use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::vulnerable::{Auth, Flaws, OriginCheck, Vulnerable};

const APP: &str = "https://app.example.com";

async fn wsgate_audit(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .arg("audit")
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        url.to_owned(),
        "--origin".into(),
        APP.into(),
        "--timeout".into(),
        "700ms".into(),
        "--rate".into(),
        "500".into(),
    ];
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn exit_1_on_findings_at_or_above_fail_on_and_0_below() {
    let v = Vulnerable::start(Flaws {
        allow_null: true,
        ..Flaws::strict(&[APP], Auth::None)
    })
    .await;
    let url = format!("ws://{}/ws", v.addr);
    let out = wsgate_audit(args(&url, &[])).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("origin-null                high      FINDING"),
        "{table}"
    );
    assert!(!table.contains('\x1b'), "colour in a pipe");
    let out = wsgate_audit(args(&url, &["--fail-on", "critical"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = wsgate_audit(args(&url, &["--format", "json"])).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema"], "wsgate-audit/1");
    assert_eq!(json["summary"]["findings"]["high"], 1);
    let out = wsgate_audit(args(
        &url,
        &["--format", "sarif", "--checks", "origin-null"],
    ))
    .await;
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "origin-null");
}

#[tokio::test]
async fn exit_2_when_the_audit_cannot_run_with_a_one_line_reason() {
    let v = Vulnerable::start(Flaws {
        origin: OriginCheck::Exact(vec!["https://elsewhere.example".into()]),
        ..Flaws::strict(&[], Auth::None)
    })
    .await;
    let refused = format!("ws://{}/ws", v.addr);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for (argv, words) in [
        (args(&refused, &[]), "was answered HTTP/1.1 403"),
        (args(&format!("ws://{closed}/ws"), &[]), "cannot reach"),
        (
            args("http://example.com/", &[]),
            "give a ws:// or wss:// URL",
        ),
        (
            args(&refused, &["--checks", "origin-nope"]),
            "unknown check id(s): origin-nope",
        ),
        (args(&refused, &["--header", "no colon"]), "\"Name: value\""),
    ] {
        let out = wsgate_audit(argv).await;
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(words), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[tokio::test]
async fn an_untrusted_certificate_stops_the_audit_unless_insecure_then_is_reported() {
    let v = Vulnerable::start(Flaws::strict(&[APP], Auth::None)).await;
    let gw = TestGateway::start(&format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
tls = {{ self_signed = true }}

[[route]]
path = "/ws"
upstream = "ws://{}/ws"
origins = ["{APP}"]
auth = "none"
"#,
        v.addr
    ))
    .await;
    let url = format!("wss://{}/ws", gw.addr);
    let out = wsgate_audit(args(&url, &[])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--insecure"), "{}", stderr(&out));
    let out = wsgate_audit(args(&url, &["--insecure", "--format", "json"])).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tls = check(&json, "tls-certificate");
    assert_eq!(tls["status"], "finding", "{tls}");
    assert!(tls["evidence"].as_str().unwrap().contains("--insecure"));
    let cleartext = check(&json, "transport-cleartext");
    assert_eq!(cleartext["status"], "pass", "{cleartext}");
    // rustls offers neither TLS 1.0 nor 1.1.
    assert_eq!(check(&json, "tls-old-versions")["status"], "pass");
}

/// One check's entry in a JSON report.
fn check<'a>(json: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
}
