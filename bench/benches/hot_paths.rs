//! Micro-benchmarks of what wsgate does per handshake and per byte.
//!
//! Run: `cargo bench -p wsgate-bench --bench hot_paths`
//! (CI runs each once with `-- --test` to check the harness, asserting nothing about speed.)
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::SystemTime;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use wsgate_config::origin::{Origin, OriginPattern};
use wsgate_proto::frame::{Decoder, Limits, Sender, Step};
use wsgate_proto::mask::MaskSource;
use wsgate_proto::utf8::Utf8Stream;

struct Fixed;
impl MaskSource for Fixed {
    fn next_mask(&mut self) -> [u8; 4] {
        [1, 2, 3, 4]
    }
}

/// A final client frame (masked, as a client sends it).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    wsgate_testkit::client::encode(0x80 | opcode, payload, true)
}

/// Decodes one whole frame as the relay does: header, then payload in place.
fn decode_all(d: &mut Decoder, buf: &mut [u8]) {
    let mut pos = 0;
    while pos < buf.len() {
        match d.next(&mut buf[pos..], &mut Fixed).unwrap() {
            Step::Data { len, .. } | Step::Control { len, .. } => pos += len,
            Step::NeedMore => break,
        }
    }
}

fn frames(c: &mut Criterion) {
    let limits = Limits {
        max_frame: 1 << 20,
        max_message: 1 << 20,
    };
    let mut g = c.benchmark_group("client_frame");
    for (name, opcode, len) in [
        ("text_64B", 0x1, 64usize),
        ("text_16KiB", 0x1, 16 << 10),
        ("binary_16KiB", 0x2, 16 << 10),
    ] {
        let payload: Vec<u8> = "wsgate—éxample ".bytes().cycle().take(len).collect();
        let payload = if opcode == 0x1 {
            String::from_utf8_lossy(&payload).into_owned().into_bytes()
        } else {
            payload
        };
        let frame = client_frame(opcode, &payload);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(name, |b| {
            let mut d = Decoder::new(Sender::Client, limits);
            b.iter_batched_ref(
                || frame.clone(),
                |buf| decode_all(&mut d, buf),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8_1MiB");
    let ascii = vec![b'a'; 1 << 20];
    let mixed: Vec<u8> = "κόσμε 𝄞 ok ".repeat((1 << 20) / 20).into_bytes();
    for (name, text) in [("ascii", &ascii), ("multibyte", &mixed)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut v = Utf8Stream::default();
                for chunk in text.chunks(16 << 10) {
                    v.feed(black_box(chunk)).unwrap();
                }
                v.finish().unwrap();
            })
        });
    }
    g.finish();
}

fn origins(c: &mut Criterion) {
    let list: Vec<OriginPattern> = [
        "https://app.example.com",
        "https://*.example.org",
        "http://localhost:3000",
    ]
    .iter()
    .map(|p| OriginPattern::parse(p).unwrap())
    .collect();
    let mut g = c.benchmark_group("origin_parse_and_match");
    for (name, origin) in [
        ("listed", "https://app.example.com"),
        ("subdomain", "https://a.b.example.org"),
        ("foreign", "https://app.example.com.evil.test"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let o = Origin::parse(black_box(origin)).unwrap();
                list.iter().any(|p| p.matches(&o))
            })
        });
    }
    g.finish();
}

const SECRET: &str = "a-bench-secret-of-at-least-32-bytes!";

fn jwt(c: &mut Criterion) {
    let mut g = c.benchmark_group("jwt_verify");
    let claims = wsgate_testkit::jwt::claims("alice", 3600);
    let hs = wsgate_config::parse_with_env(
        &config("hs256_secret_env = \"S\"\nalgorithms = [\"HS256\"]", "jwt"),
        Path::new("."),
        &|_| Some(SECRET.into()),
    )
    .unwrap();
    let hs = wsgate_policy::verify::JwtVerifier::new(hs.auth.jwt.as_ref().unwrap(), None).unwrap();
    let token = wsgate_testkit::jwt::hs256(SECRET, &claims);
    g.bench_function("hs256", |b| {
        b.iter(|| hs.verify(black_box(&token), SystemTime::now()).unwrap())
    });

    let signer = wsgate_testkit::jwt::Signer::es256("k1");
    let dir = std::env::temp_dir().join(format!("wsgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("jwks.json"), wsgate_testkit::jwt::jwks(&[&signer])).unwrap();
    let es = wsgate_config::parse(
        &config("keys = \"jwks.json\"\nalgorithms = [\"ES256\"]", "jwt"),
        &dir,
    )
    .unwrap();
    let jwks = std::fs::read_to_string(dir.join("jwks.json")).unwrap();
    let es = wsgate_policy::verify::JwtVerifier::new(es.auth.jwt.as_ref().unwrap(), Some(&jwks))
        .unwrap();
    let token = signer.sign(&claims);
    g.bench_function("es256", |b| {
        b.iter(|| es.verify(black_box(&token), SystemTime::now()).unwrap())
    });
    g.finish();
    let _ = std::fs::remove_dir_all(dir);
}

fn config(jwt: &str, auth: &str) -> String {
    format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[auth.jwt]\n{jwt}\n\n[[route]]\npath = \"/chat\"\nupstream = \"ws://127.0.0.1:9/\"\norigins = [\"https://app.example.com\", \"https://*.example.org\"]\nauth = \"{auth}\"\n"
    )
}

fn admission(c: &mut Criterion) {
    let config = wsgate_config::parse_with_env(
        &config("hs256_secret_env = \"S\"\nalgorithms = [\"HS256\"]", "none"),
        Path::new("."),
        &|_| Some(SECRET.into()),
    )
    .unwrap();
    let router = wsgate_policy::Router::new(config.routes.clone());
    let headers = http::HeaderMap::new();
    let protocols = vec!["chat.v1".to_owned()];
    c.bench_function("admit_route_host_origin", |b| {
        b.iter(|| {
            let req = wsgate_policy::Request {
                path: "/chat/room",
                query: None,
                host: "127.0.0.1:8443",
                origin: Some("https://app.example.com"),
                protocols: &protocols,
                headers: &headers,
                client_cert: None,
            };
            let checked = wsgate_policy::admit(
                &config.listeners[0].hosts,
                &router,
                &config.auth,
                black_box(&req),
            )
            .unwrap();
            checked
                .finish(Err(wsgate_policy::verify::AuthFailure::Missing))
                .unwrap()
        })
    });
}

/// Per message and per handshake limits, and inflating a compressed message.
fn limits_and_inflate(c: &mut Criterion) {
    let limits = wsgate_config::Limits {
        messages_per_sec: Some(1_000_000),
        burst: Some(u32::MAX),
        bytes_per_sec: Some(u64::from(u32::MAX)),
        ..wsgate_config::Limits::default()
    };
    let meter = wsgate_policy::limits::Meter::for_limits(&limits).unwrap();
    c.bench_function("meter/message_and_bytes", |b| {
        b.iter(|| {
            meter.message().unwrap();
            meter.bytes(black_box(64)).unwrap();
        })
    });
    let v6: std::net::IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
    c.bench_function("client_key/ipv6_64", |b| {
        b.iter(|| wsgate_policy::limits::ClientKey::new(black_box(v6), 64))
    });
    let text: String = (0..2048)
        .map(|i| format!("{{\"id\":{i},\"text\":\"hello\"}}"))
        .collect::<String>()
        .chars()
        .take(64 * 1024)
        .collect();
    let compressed = wsgate_testkit::deflate::compress(text.as_bytes());
    let mut g = c.benchmark_group("inflate");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("json_64KiB", |b| {
        let mut out = vec![0u8; 16 * 1024];
        b.iter(|| {
            let mut z = wsgate_proto::deflate::Inflater::new(1 << 20);
            for input in [
                compressed.as_slice(),
                wsgate_proto::deflate::Inflater::tail(),
            ] {
                let mut input = input;
                loop {
                    let (used, made) = z.inflate(input, &mut out).unwrap();
                    input = &input[used..];
                    if input.is_empty() && made < out.len() {
                        break;
                    }
                }
            }
            assert_eq!(z.total_out(), text.len() as u64);
        })
    });
    g.finish();
}

/// A chat message checked against a typical schema, as a route with
/// `[route.messages] schema` does for every text message.
fn schema(c: &mut Criterion) {
    let schema = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["type", "room", "text"],
        "additionalProperties": false,
        "properties": {
            "type": { "enum": ["message", "typing", "read"] },
            "room": { "type": "string", "pattern": "^[a-z0-9-]{1,32}$" },
            "text": { "type": "string", "maxLength": 2000 },
            "reply_to": { "type": "integer", "minimum": 0 }
        }
    });
    let rules = wsgate_policy::messages::MessageRules::new(&wsgate_config::Messages {
        schema: Some((Path::new("chat.schema.json").to_owned(), schema)),
        ..wsgate_config::Messages::default()
    })
    .unwrap();
    let message = br#"{"type":"message","room":"general","text":"hello, everyone: the build is green again","reply_to":42}"#;
    let mut g = c.benchmark_group("json_schema");
    g.throughput(Throughput::Bytes(message.len() as u64));
    g.bench_function("chat_message", |b| {
        b.iter(|| rules.check_text(black_box(message)).unwrap())
    });
    g.finish();
}

criterion_group!(
    benches,
    schema,
    frames,
    utf8,
    origins,
    jwt,
    admission,
    limits_and_inflate
);
criterion_main!(benches);
