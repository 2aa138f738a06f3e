//! Message rules over real sockets: types, JSON, a JSON Schema, and
//! `on_violation = "drop"`. A checked text message is assembled and judged
//! before any of it reaches the upstream.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use common::ORIGIN;
use wsgate_testkit::client::{RawClient, encode};
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Echo;

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["text"],
  "properties": { "text": { "type": "string", "maxLength": 20 } },
  "additionalProperties": false
}"#;

async fn gateway(on_violation: &str) -> (Echo, TestGateway, tempfile::TempDir) {
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chat.json"), SCHEMA).unwrap();
    let config = common::config(echo.addr, "", "")
        + &format!(
            "\n[route.messages]\ntypes = [\"text\"]\nschema = \"chat.json\"\non_violation = \"{on_violation}\"\n"
        );
    let gw = TestGateway::start_in(&config, Some(dir.path())).await;
    (echo, gw, dir)
}

async fn open(gw: &TestGateway) -> RawClient {
    let mut c = RawClient::connect(gw.addr).await;
    assert_eq!(c.handshake("/chat", &[ORIGIN]).await.status, 101);
    c
}

#[tokio::test]
async fn a_valid_message_in_fragments_arrives_whole() {
    let (_echo, gw, _dir) = gateway("close").await;
    let mut c = open(&gw).await;
    c.send_frame(0x01, br#"{"te"#, true).await;
    c.send_frame(0x89, b"", true).await;
    c.send_frame(0x00, r#"xt": "hé"#.as_bytes(), true).await;
    c.send_frame(0x80, br#"llo"}"#, true).await;
    assert_eq!(
        c.read_data().await.payload,
        r#"{"text": "héllo"}"#.as_bytes()
    );
}

#[tokio::test]
async fn broken_rules_close_with_their_codes() {
    let (_echo, mut gw, _dir) = gateway("close").await;
    let cases: [(Vec<u8>, u16, &str); 5] = [
        (encode(0x81, b"not json", true), 1008, "invalid_json"),
        (
            encode(0x81, br#"{"text": 5}"#, true),
            1008,
            "schema_violation",
        ),
        (
            encode(0x81, br#"{"text": "my-secret-is-too-long"}"#, true),
            1008,
            "schema_violation",
        ),
        (
            encode(0x81, br#"{"text": "hi", "admin": true}"#, true),
            1008,
            "schema_violation",
        ),
        (
            encode(0x82, b"\x00\x01", true),
            1003,
            "message_type_not_allowed",
        ),
    ];
    for (bytes, code, reason) in cases {
        let mut c = open(&gw).await;
        c.send_text(r#"{"text": "first"}"#).await;
        c.send_raw(&bytes).await;
        assert_eq!(
            c.read_data().await.payload,
            br#"{"text": "first"}"#,
            "{reason}"
        );
        let close = c.read_close().await;
        assert_eq!(
            (close.close_code(), close.close_reason().as_str()),
            (Some(code), reason)
        );
        // Answered and hung up, as a client does: the gateway, which reads
        // and discards what a client that broke a rule still sends, logs
        // the close at the hang-up rather than after a second of quiet.
        c.send_frame(0x88, &code.to_be_bytes(), true).await;
        drop(c);
        let ev = gw.close_event().await;
        assert_eq!(ev.reason, Some(reason));
        // The log says which rule failed, not what the client wrote.
        let detail = ev.detail.as_deref().unwrap_or_default();
        assert!(!detail.contains("secret"), "{detail}");
    }
}

#[tokio::test]
async fn drop_mode_drops_the_message_and_keeps_the_connection() {
    let (_echo, mut gw, _dir) = gateway("drop").await;
    let mut c = open(&gw).await;
    c.send_text("not json").await;
    c.send_frame(0x82, b"binary", true).await;
    c.send_text(r#"{"text": 1}"#).await;
    c.send_text(r#"{"text": "kept"}"#).await;
    // Only the valid message ever reached the upstream and came back.
    assert_eq!(c.read_data().await.payload, br#"{"text": "kept"}"#);
    c.send_frame(0x88, &1000u16.to_be_bytes(), true).await;
    c.read_close().await;
    let ev = gw.close_event().await;
    assert_eq!(
        (ev.reason, ev.messages_dropped),
        (Some("client_closed"), Some(3))
    );
}

#[tokio::test]
async fn a_schema_cannot_make_the_gateway_fetch_anything() {
    let dir = tempfile::tempdir().unwrap();
    let remote = r#"{"$ref": "https://schemas.example.invalid/chat.json"}"#;
    std::fs::write(dir.path().join("remote.json"), remote).unwrap();
    let config = common::config("127.0.0.1:9".parse().unwrap(), "", "")
        + "\n[route.messages]\nschema = \"remote.json\"\n";
    let config = wsgate_config::parse(&config, dir.path()).unwrap();
    let audit = wsgate_gateway::AuditLog::new(Box::new(std::io::sink()));
    let errors = wsgate_gateway::prepare(config, audit).err().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("route[0].messages.schema")),
        "{errors:?}"
    );
}
