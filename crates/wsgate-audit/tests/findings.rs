//! The auditor against real endpoints: a test target made vulnerable in the
//! ways real servers were (each flaw from a CVE class) must be flagged with
//! the right check ids; the same target behind wsgate with a strict config
//! must show nothing above info.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::time::Duration;

use wsgate_audit::report::{Outcome, Report, Severity};
use wsgate_audit::target::Options;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::jwt::{self, claims};
use wsgate_testkit::vulnerable::{Auth, Flaws, OriginCheck, Vulnerable};

const APP: &str = "https://app.example.com";
const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn options(url: String) -> Options {
    Options {
        url,
        origin: Some(APP.into()),
        timeout: Duration::from_millis(700),
        rate: 500,
        max_probe: 1 << 20,
        hold_wait: Duration::from_secs(3),
        ..Options::default()
    }
}

async fn audit(options: Options) -> Report {
    wsgate_audit::audit(options, &mut |_, _, _| {})
        .await
        .unwrap()
}

fn found(report: &Report) -> BTreeSet<&'static str> {
    report
        .entries
        .iter()
        .filter(|e| matches!(e.outcome, Outcome::Finding { .. }))
        .map(|e| e.check.id)
        .collect()
}

/// What check `id` came to.
fn outcome<'a>(report: &'a Report, id: &str) -> &'a Outcome {
    &report
        .entries
        .iter()
        .find(|e| e.check.id == id)
        .unwrap_or_else(|| panic!("no entry for {id}"))
        .outcome
}

fn assert_found(report: &Report, want: &[&str], not: &[&str]) {
    let got = found(report);
    for id in want {
        assert!(
            got.contains(id),
            "{id} not flagged; found {got:?}\n{}",
            report.table(false)
        );
    }
    for id in not {
        assert!(
            !got.contains(id),
            "{id} flagged wrongly; found {got:?}\n{}",
            report.table(false)
        );
    }
}

/// wsgate in front of `upstream` on the route /ws, with JWTs signed with
/// [`SECRET`]; `listener`, `route` and `limits` are lines for those tables.
async fn behind_wsgate(
    upstream: std::net::SocketAddr,
    listener: &str,
    route: &str,
    limits: &str,
) -> TestGateway {
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
{listener}

[auth.jwt]
hs256_secret_env = "JWT_SECRET"
algorithms = ["HS256"]

[[route]]
path = "/ws"
upstream = "ws://{upstream}/ws"
origins = ["{APP}"]
{route}

[route.limits]
{limits}
"#
    );
    TestGateway::start_with_env(&config, None, &[("JWT_SECRET", SECRET)]).await
}

fn strict() -> Flaws {
    Flaws::strict(&[APP], Auth::None)
}

#[tokio::test]
async fn no_origin_check_is_cross_site_hijacking() {
    // IPython CVE-2014-3429, webpack-dev-server CVE-2018-14732, code-server CVE-2023-26114.
    let v = Vulnerable::start(Flaws {
        origin: OriginCheck::None,
        require_origin: false,
        ..strict()
    })
    .await;
    let r = audit(options(format!("ws://{}/ws", v.addr))).await;
    assert_found(
        &r,
        &[
            "origin-foreign",
            "origin-null",
            "origin-file",
            "origin-extension",
            "origin-ip-literal",
        ],
        &["frame-unmasked", "version-unsupported", "subprotocol-echo"],
    );
    assert_eq!(r.worst(), Some(Severity::Critical));
}

#[tokio::test]
async fn a_substring_origin_check_falls_to_lookalikes_only() {
    // socket.io WS-2020-0443.
    let v = Vulnerable::start(Flaws {
        origin: OriginCheck::Substring("app.example.com".into()),
        ..strict()
    })
    .await;
    let r = audit(options(format!("ws://{}/ws", v.addr))).await;
    assert_found(
        &r,
        &["origin-lookalike"],
        &["origin-foreign", "origin-null"],
    );
}

#[tokio::test]
async fn null_and_ip_literal_origins_accepted() {
    // Next.js CVE-2026-27977; webpack-dev-server CVE-2025-30360.
    let v = Vulnerable::start(Flaws {
        allow_null: true,
        allow_ip_literal: true,
        ..strict()
    })
    .await;
    let r = audit(options(format!("ws://{}/ws", v.addr))).await;
    assert_found(
        &r,
        &["origin-null", "origin-ip-literal"],
        &["origin-foreign", "origin-lookalike"],
    );
}

#[tokio::test]
async fn cookie_authentication_without_an_origin_check() {
    // Jenkins CVE-2024-23898.
    let v = Vulnerable::start(Flaws {
        origin: OriginCheck::None,
        require_origin: false,
        auth: Auth::Cookie("session=s3cret".into()),
        ..strict()
    })
    .await;
    let mut o = options(format!("ws://{}/ws", v.addr));
    // The page is on the endpoint's own host, where Sec-Fetch-Site: cross-site is a contradiction.
    o.origin = None;
    o.cookies = vec!["session=s3cret".into()];
    o.expect_auth = true;
    let r = audit(o).await;
    assert_found(
        &r,
        &["origin-foreign", "origin-missing", "sec-fetch-site"],
        &["auth-missing"],
    );
    let foreign = outcome(&r, "origin-foreign");
    assert!(
        matches!(foreign, Outcome::Finding { evidence } if evidence.contains("with the given credentials")),
        "{:?}",
        foreign
    );
}

#[tokio::test]
async fn no_authentication_and_tokens_from_the_query() {
    // jupyter-server-proxy CVE-2024-28179.
    let v = Vulnerable::start(strict()).await;
    let mut o = options(format!("ws://{}/ws", v.addr));
    o.expect_auth = true;
    assert_found(
        &audit(o).await,
        &["auth-missing", "auth-invalid-token"],
        &[],
    );

    let v = Vulnerable::start(Flaws {
        auth: Auth::Bearer {
            token: "tok3n".into(),
            query: true,
        },
        ..strict()
    })
    .await;
    let mut o = options(format!("ws://{}/ws", v.addr));
    o.expect_auth = true;
    o.bearer = Some("tok3n".into());
    assert_found(
        &audit(o).await,
        &["auth-query-token"],
        &["auth-missing", "auth-invalid-token"],
    );
    let mut o = options(format!("ws://{}/ws?access_token=tok3n", v.addr));
    o.bearer = Some("tok3n".into());
    assert_found(&audit(o).await, &["auth-query-token"], &[]);
}

#[tokio::test]
async fn protocol_hygiene_flaws() {
    let v = Vulnerable::start(Flaws {
        any_version: true,
        echo_subprotocol: true,
        validate_frames: false,
        ..strict()
    })
    .await;
    let mut o = options(format!("ws://{}/ws", v.addr));
    o.checks = vec![
        "version-unsupported".into(),
        "subprotocol-echo".into(),
        "frame-unmasked".into(),
        "frame-reserved-bits".into(),
        "frame-reserved-opcode".into(),
        "frame-invalid-utf8".into(),
        "survives-malformed-frames".into(),
    ];
    let r = audit(o).await;
    assert_found(
        &r,
        &[
            "version-unsupported",
            "subprotocol-echo",
            "frame-unmasked",
            "frame-reserved-bits",
            "frame-reserved-opcode",
            "frame-invalid-utf8",
        ],
        &["survives-malformed-frames", "origin-foreign"],
    );
    // Unselected checks are reported as skipped, not as passes.
    let foreign = outcome(&r, "origin-foreign");
    assert!(matches!(foreign, Outcome::Skipped { .. }));
}

/// A server that answers broken JSON with its parser's traceback; a strict
/// one (which echoes what it gets, broken JSON too) is not a finding, nor
/// is the leaking one behind wsgate with a `json` rule.
#[tokio::test]
async fn a_traceback_in_an_answer_is_a_finding_and_an_echo_is_not() {
    let leaks = || Flaws {
        leaks_errors: true,
        ..strict()
    };
    let audit_of = |url: String| async move {
        let mut o = options(url);
        o.checks = vec!["error-disclosure".into()];
        audit(o).await
    };
    let run = |flaws: Flaws| async move {
        let v = Vulnerable::start(flaws).await;
        audit_of(format!("ws://{}/ws", v.addr)).await
    };
    let leaky = run(leaks()).await;
    assert_found(&leaky, &["error-disclosure"], &[]);
    let evidence = format!("{:?}", leaky.findings()[0].outcome);
    assert!(evidence.contains("a Python traceback"), "{evidence}");
    let echo = run(strict()).await;
    assert_found(&echo, &[], &["error-disclosure"]);
    let entry = outcome(&echo, "error-disclosure");
    assert!(
        matches!(entry, Outcome::Pass { evidence } if evidence.starts_with("3 answers to 3 malformed messages")),
        "{:?}",
        entry
    );
    // The first broken message closes the connection, 1008 invalid_json,
    // before the application can answer it.
    let v = Vulnerable::start(leaks()).await;
    let gw = behind_wsgate(
        v.addr,
        "",
        "auth = \"none\"\n\n[route.messages]\njson = true",
        "",
    )
    .await;
    let guarded = audit_of(format!("ws://{}/ws", gw.addr)).await;
    let entry = outcome(&guarded, "error-disclosure");
    assert!(
        matches!(entry, Outcome::Pass { evidence } if evidence.starts_with("1 answers to 3")),
        "{:?}",
        entry
    );
}

#[tokio::test]
async fn no_limits_and_no_timeouts_with_aggressive() {
    let v = Vulnerable::start(Flaws {
        max_message: None,
        inflate: true,
        timeout: None,
        ..strict()
    })
    .await;
    let mut o = options(format!("ws://{}/ws", v.addr));
    o.aggressive = true;
    let r = audit(o).await;
    assert_found(
        &r,
        &[
            "limit-message-size",
            "limit-continuation",
            "deflate-offered",
            "limit-deflate-bomb",
            "slow-handshake",
            "idle-timeout",
            "message-rate",
            "connection-limit",
        ],
        &["origin-foreign"],
    );
    // Without --aggressive none of them runs.
    let r = audit(options(format!("ws://{}/ws", v.addr))).await;
    assert_found(
        &r,
        &["deflate-offered"],
        &["limit-message-size", "slow-handshake"],
    );
}

/// An endpoint that falls over under the connection probe is not reported
/// as enforcing a limit: the connection that failed was not refused by one,
/// as the next, with the others closed, fails too.
#[tokio::test]
async fn an_endpoint_that_falls_over_under_the_connection_probe_gets_no_pass() {
    let v = Vulnerable::start(Flaws {
        dies_after: Some(10),
        ..strict()
    })
    .await;
    let mut o = options(format!("ws://{}/ws", v.addr));
    o.aggressive = true;
    o.checks = vec!["connection-limit".into()];
    let r = audit(o).await;
    let entry = outcome(&r, "connection-limit");
    match entry {
        Outcome::Error { reason } => assert!(
            reason.contains("Connection refused") && reason.contains("stopped answering"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn behind_wsgate_with_a_strict_config_nothing_is_above_info() {
    // The most vulnerable target there is...
    let v = Vulnerable::start(Flaws {
        origin: OriginCheck::None,
        require_origin: false,
        allow_null: true,
        allow_ip_literal: true,
        hosts: None,
        auth: Auth::None,
        max_message: None,
        inflate: true,
        timeout: None,
        echo_subprotocol: true,
        any_version: true,
        validate_frames: false,
        dies_after: None,
        // Only a `json` rule keeps a leaking application's tracebacks in:
        // tested on its own below.
        leaks_errors: false,
    })
    .await;
    // ...behind wsgate.
    let gw = behind_wsgate(
        v.addr,
        "handshake_timeout = \"1s\"",
        "auth = [\"jwt\"]\ncompression = true",
        r#"
max_message = "64KiB"
messages_per_sec = 100
burst = 200
max_conns_per_ip = 20
idle_timeout = "1s"
ping_interval = "500ms"
"#,
    )
    .await;
    let mut o = options(format!("ws://{}/ws", gw.addr));
    o.bearer = Some(jwt::hs256(SECRET, &claims("auditor", 3600)));
    o.expect_auth = true;
    o.aggressive = true;
    // A handshake throttle would refuse the audit's own probes too; it has
    // a test of its own (below).
    o.skip = vec!["auth-guessing".into()];
    let r = audit(o).await;
    let above_info: Vec<&str> = r
        .findings()
        .iter()
        .filter(|e| e.check.severity > Severity::Info)
        .map(|e| e.check.id)
        .collect();
    assert!(above_info.is_empty(), "{above_info:?}\n{}", r.table(false));
    assert_found(&r, &["deflate-offered"], &[]);
    // Every check ran: none errored, and only the cookie one was skipped.
    for e in &r.entries {
        match &e.outcome {
            Outcome::Error { reason } => panic!("{} errored: {reason}", e.check.id),
            Outcome::Skipped { reason } => assert!(
                [
                    "sec-fetch-site",
                    "origin-sibling",
                    "tls-certificate",
                    "tls-old-versions",
                    "auth-guessing"
                ]
                .contains(&e.check.id),
                "{} skipped: {reason}",
                e.check.id
            ),
            _ => {}
        }
    }
}

/// Forged tokens: an endpoint that answers every one is a finding; wsgate
/// with `handshakes_per_ip_per_min` answers 429 once the budget is spent.
#[tokio::test]
async fn guessing_credentials_without_a_throttle_is_a_finding_and_429_ends_it() {
    let v = Vulnerable::start(Flaws {
        auth: Auth::Bearer {
            token: "tok3n".into(),
            query: false,
        },
        ..strict()
    })
    .await;
    let mut o = options(format!("ws://{}/ws", v.addr));
    o.bearer = Some("tok3n".into());
    o.expect_auth = true;
    o.aggressive = true;
    o.checks = vec!["auth-guessing".into()];
    let r = audit(o.clone()).await;
    assert_found(&r, &["auth-guessing"], &[]);
    let evidence = format!("{:?}", outcome(&r, "auth-guessing"));
    assert!(evidence.contains("100 forged bearer tokens"), "{evidence}");
    assert!(evidence.contains("401"), "{evidence}");

    // The same endpoint without its own authentication, behind wsgate.
    let open = Vulnerable::start(strict()).await;
    let gw = behind_wsgate(
        open.addr,
        "",
        "auth = [\"jwt\"]",
        "handshakes_per_ip_per_min = 30",
    )
    .await;
    o.url = format!("ws://{}/ws", gw.addr);
    o.bearer = Some(jwt::hs256(SECRET, &claims("auditor", 3600)));
    let r = audit(o).await;
    match outcome(&r, "auth-guessing") {
        // The legitimate handshake took one of the 30.
        Outcome::Pass { evidence } => assert_eq!(
            evidence,
            "forged token 30 was answered HTTP/1.1 429 Too Many Requests"
        ),
        other => panic!("{other:?}\n{}", r.table(false)),
    }
}

/// An endpoint that throttles the audit refuses its probes for their pace:
/// none of those refusals may pass for a verdict.
#[tokio::test]
async fn a_check_refused_by_a_throttle_has_no_verdict() {
    let open = Vulnerable::start(strict()).await;
    let gw = behind_wsgate(
        open.addr,
        "",
        "auth = \"none\"",
        "handshakes_per_ip_per_min = 4",
    )
    .await;
    let r = audit(options(format!("ws://{}/ws", gw.addr))).await;
    let mut no_verdict = 0;
    for e in &r.entries {
        match &e.outcome {
            Outcome::Pass { evidence } => {
                assert!(!evidence.contains("429"), "{}: {evidence}", e.check.id);
            }
            Outcome::Error { reason } if reason.contains("answered 429") => no_verdict += 1,
            _ => {}
        }
    }
    // The baseline and the first probes fit in the budget; the origin
    // probes after them do not.
    assert!(no_verdict >= 5, "{}", r.table(false));
}

#[tokio::test]
async fn tls_1_0_is_recognised_and_wsgate_offers_neither_1_0_nor_1_1() {
    use wsgate_audit::target::Target;
    use wsgate_audit::wire::legacy_tls;
    let stub = wsgate_testkit::vulnerable::LegacyTls::start().await;
    let target = |addr: std::net::SocketAddr| {
        Target::new(Options {
            insecure: true,
            ..options(format!("wss://{addr}/ws"))
        })
        .unwrap()
    };
    assert_eq!(
        legacy_tls(&target(stub.addr).dialer, 0x0301).await,
        Ok(true)
    );
    let v = Vulnerable::start(strict()).await;
    let gw = TestGateway::start(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\ntls = {{ self_signed = true }}\n\n[[route]]\npath = \"/ws\"\nupstream = \"ws://{}/ws\"\norigins = [\"{APP}\"]\nauth = \"none\"\n",
        v.addr
    ))
    .await;
    let t = target(gw.addr);
    assert_eq!(legacy_tls(&t.dialer, 0x0301).await, Ok(false));
    assert_eq!(legacy_tls(&t.dialer, 0x0302).await, Ok(false));
}

#[tokio::test]
async fn a_client_certificate_is_presented_and_withheld_for_the_auth_checks() {
    let pki = wsgate_testkit::pki::Pki::new();
    let server = pki.server("gate", &["localhost"]);
    let alice = pki.client("alice", "alice@example.com", "Alice", 2001, false);
    pki.ca_path();
    let v = Vulnerable::start(strict()).await;
    let config = format!(
        r#"
[[listener]]
bind = "127.0.0.1:0"
tls = {{ cert = {cert:?}, key = {key:?} }}
hosts = ["localhost"]
client_ca = "ca.pem"
client_cert = "optional"

[auth.mtls]
user_from = "san_email"

[[route]]
path = "/ws"
upstream = "ws://{up}/ws"
origins = ["{APP}"]
auth = "mtls"
"#,
        cert = server.cert,
        key = server.key,
        up = v.addr,
    );
    let gw = TestGateway::start_in(&config, Some(pki.dir())).await;
    let mut o = options(format!("wss://localhost:{}/ws", gw.addr.port()));
    o.client_cert = Some((alice.cert.clone(), alice.key.clone()));
    o.insecure = true;
    o.expect_auth = true;
    let r = audit(o).await;
    // The certificate opened the legitimate handshake; without it, refused.
    let missing = outcome(&r, "auth-missing");
    assert!(
        matches!(missing, Outcome::Pass { evidence } if evidence.contains("401")),
        "{:?}",
        missing
    );
    // The test CA is not a system root: reported, and nothing else.
    let got = found(&r);
    assert_eq!(
        got,
        BTreeSet::from(["tls-certificate"]),
        "{}",
        r.table(false)
    );
}
