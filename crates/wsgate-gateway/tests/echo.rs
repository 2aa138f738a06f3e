//! Messages pass through the gateway to a real upstream and back.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod common;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsgate_testkit::gateway::TestGateway;
use wsgate_testkit::upstream::Echo;

#[tokio::test]
async fn a_library_client_exchanges_messages_through_the_gateway() {
    let mut echo = Echo::start().await;
    let mut gw = TestGateway::start(&common::config(echo.addr, "", "")).await;
    let mut req = format!("ws://{}/chat/room?x=1", gw.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "https://app.example.com".parse().unwrap());
    req.headers_mut()
        .insert("cookie", "session=abc".parse().unwrap());
    req.headers_mut()
        .insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let big = vec![7u8; 300_000];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));

    // What the upstream saw: the gateway's own key, the client's cookie and
    // origin, the route's path with the query, and no forged X-Forwarded-For.
    let seen = echo.requests.recv().await.unwrap();
    assert_eq!(seen["origin"], "https://app.example.com");
    assert_eq!(seen["cookie"], "session=abc");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_ne!(seen["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    assert!(seen.get("sec-websocket-extensions").is_none());

    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}

    let hs = gw.handshake_event().await;
    assert_eq!(
        (hs.decision, hs.status, hs.enforced),
        (Some("admitted"), Some(101), true)
    );
    assert_eq!(hs.path.as_deref(), Some("/chat/room"));
    let close = gw.close_event().await;
    assert_eq!(close.reason, Some("client_closed"));
    assert_eq!(close.initiator, Some("client"));
    assert_eq!(close.messages_in, Some(2));
    assert_eq!(close.messages_out, Some(2));
    assert!(close.bytes_in.unwrap() > 300_000);
    TestGateway::assert_close_repeats(&hs, &close);
    assert_eq!(close.host.as_deref(), Some(gw.addr.to_string().as_str()));
    // One JSON object per line, and the query string is not in it.
    let text = gw.audit_text();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["conn"].is_u64());
    }
    assert!(!text.contains("x=1"), "{text}");
}
