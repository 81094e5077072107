//! Golden vectors: `tests/vectors/*.json` at the repository root are the
//! contract every language checks byte for byte. Regenerate them only for a
//! deliberate format change: `STRATACACHE_WRITE_VECTORS=1 cargo test --test vectors`.

use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use stratacache::{Codec, DecodeError, Entry, Format, Meta, key::redis_keys};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Good {
    name: String,
    /// Signing key as UTF-8 text, if any.
    signing_key: Option<String>,
    compress_threshold: usize,
    format: u8,
    created_at_ms: u64,
    fresh_until_ms: u64,
    stale_until_ms: u64,
    load_us: u32,
    tags: Vec<(String, u64)>,
    payload_hex: String,
    encoded_hex: String,
    /// False where encoding depends on the compressor's build (zstd):
    /// readers must decode `encoded_hex`, writers need not reproduce it.
    encode_exact: bool,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Bad {
    name: String,
    signing_key: Option<String>,
    encoded_hex: String,
    error: String,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct EnvelopeVectors {
    format_version: u8,
    good: Vec<Good>,
    bad: Vec<Bad>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct KeyVector {
    namespace: String,
    key: String,
    redis_key: String,
}

fn codec(key: &Option<String>, threshold: usize) -> Codec {
    Codec::new(threshold, 3, 32 << 20, key.as_deref().map(str::as_bytes))
}

fn entry_of(g: &Good) -> Entry {
    Entry {
        meta: Meta {
            format: Format(g.format),
            created_at_ms: g.created_at_ms,
            fresh_until_ms: g.fresh_until_ms,
            stale_until_ms: g.stale_until_ms,
            load_us: g.load_us,
            tags: g.tags.clone().into(),
        },
        payload: Bytes::from(hex::decode(&g.payload_hex).expect("hex")),
        memo: Default::default(),
    }
}

fn error_name(e: DecodeError) -> String {
    format!("{e:?}")
        .split('(')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn generate() -> (EnvelopeVectors, Vec<KeyVector>) {
    let key = Some("stratacache-test-key".to_owned());
    let mut good = Vec::new();
    let mut add = |name: &str,
                   sk: &Option<String>,
                   thr: usize,
                   fmt: Format,
                   times: (u64, u64, u64),
                   tags: Vec<(String, u64)>,
                   payload: &[u8]| {
        let mut g = Good {
            name: name.into(),
            signing_key: sk.clone(),
            compress_threshold: thr,
            format: fmt.0,
            created_at_ms: times.0,
            fresh_until_ms: times.1,
            stale_until_ms: times.2,
            load_us: if fmt == Format::INT { 0 } else { 1500 },
            tags,
            payload_hex: hex::encode(payload),
            encoded_hex: String::new(),
            encode_exact: thr > payload.len(),
        };
        g.encoded_hex = hex::encode(codec(sk, thr).encode(&entry_of(&g)));
        good.push(g);
    };
    let t = (1_767_225_600_000, 1_767_225_660_000, 1_767_225_720_000);
    add(
        "json_plain",
        &None,
        usize::MAX,
        Format::JSON,
        t,
        vec![],
        br#"{"id":42,"name":"Ada"}"#,
    );
    add(
        "never_expires",
        &None,
        usize::MAX,
        Format::RAW,
        (t.0, 0, 0),
        vec![],
        b"\x00\x01\x02",
    );
    add(
        "empty_payload",
        &None,
        usize::MAX,
        Format::UTF8,
        t,
        vec![],
        b"",
    );
    add(
        "with_tags",
        &None,
        usize::MAX,
        Format::MSGPACK,
        t,
        vec![("user:42".into(), 3), ("orders".into(), 0)],
        b"\x82\xa2id\x2a",
    );
    add(
        "signed",
        &key,
        usize::MAX,
        Format::PICKLE,
        t,
        vec![],
        b"\x80\x05K*.",
    );
    let big = br#"{"items":[1,2,3,4,5,6,7,8,9,10]}"#.repeat(100);
    add("compressed", &None, 1024, Format::JSON, t, vec![], &big);
    add(
        "compressed_signed",
        &key,
        1024,
        Format::JSON,
        t,
        vec![],
        &big,
    );
    add(
        "counter",
        &key,
        usize::MAX,
        Format::INT,
        (0, 0, 0),
        vec![],
        b"-42",
    );

    let plain = hex::decode(&good[0].encoded_hex).expect("hex");
    let signed = hex::decode(&good[4].encoded_hex).expect("hex");
    let mut bad = Vec::new();
    let mut add_bad = |name: &str, sk: &Option<String>, bytes: Vec<u8>| {
        let err = codec(sk, usize::MAX)
            .decode(&bytes)
            .expect_err("must be rejected");
        bad.push(Bad {
            name: name.into(),
            signing_key: sk.clone(),
            encoded_hex: hex::encode(&bytes),
            error: error_name(err),
        });
    };
    add_bad("garbage", &None, b"hello, world".to_vec());
    add_bad("empty", &None, vec![]);
    add_bad("truncated_header", &None, plain[..20].to_vec());
    add_bad(
        "truncated_payload",
        &None,
        plain[..plain.len() - 1].to_vec(),
    );
    add_bad("trailing_byte", &None, [&plain[..], b"\x00"].concat());
    let mut v2 = plain.clone();
    v2[1] = 2;
    add_bad("future_version", &None, v2);
    let mut flags = plain.clone();
    flags[2] |= 0x80;
    add_bad("unknown_flag", &None, flags);
    add_bad("unsigned_for_signing_reader", &key, plain.clone());
    let mut forged = signed.clone();
    let n = forged.len();
    forged[n - 33] ^= 1; // a payload byte, signature unchanged
    add_bad("forged_payload", &key, forged);
    add_bad("wrong_key", &Some("another-key".into()), signed);

    let keys = [
        ("shop", "user:42"),
        ("shop", "a{b}c"),
        ("shop", "#starts-with-hash"),
        ("v2.api-x_y", "ünïcødé key"),
        ("shop", &"k".repeat(201)),
    ]
    .iter()
    .map(|(ns, k)| KeyVector {
        namespace: (*ns).into(),
        key: (*k).into(),
        redis_key: redis_keys(ns, k).value,
    })
    .collect();
    (
        EnvelopeVectors {
            format_version: 1,
            good,
            bad,
        },
        keys,
    )
}

#[test]
fn golden_vectors_hold_byte_for_byte() {
    let env_path = vectors_dir().join("envelope_v1.json");
    let key_path = vectors_dir().join("keys.json");
    if std::env::var_os("STRATACACHE_WRITE_VECTORS").is_some() {
        let (env, keys) = generate();
        std::fs::write(
            &env_path,
            serde_json::to_string_pretty(&env).expect("json") + "\n",
        )
        .expect("write");
        std::fs::write(
            &key_path,
            serde_json::to_string_pretty(&keys).expect("json") + "\n",
        )
        .expect("write");
    }
    let env: EnvelopeVectors =
        serde_json::from_str(&std::fs::read_to_string(&env_path).expect("vectors file"))
            .expect("parse");
    assert_eq!(env.format_version, stratacache::envelope::VERSION);
    assert!(env.good.len() >= 8 && env.bad.len() >= 10);
    for g in &env.good {
        let c = codec(&g.signing_key, g.compress_threshold);
        let encoded = hex::decode(&g.encoded_hex).expect("hex");
        let decoded = c
            .decode(&encoded)
            .unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert_eq!(decoded, entry_of(g), "{}: decode", g.name);
        if g.encode_exact {
            assert_eq!(
                hex::encode(c.encode(&entry_of(g))),
                g.encoded_hex,
                "{}: encode",
                g.name
            );
        }
    }
    for b in &env.bad {
        let err = codec(&b.signing_key, usize::MAX)
            .decode(&hex::decode(&b.encoded_hex).expect("hex"))
            .expect_err(&b.name);
        assert_eq!(error_name(err), b.error, "{}", b.name);
    }
    let keys: Vec<KeyVector> =
        serde_json::from_str(&std::fs::read_to_string(&key_path).expect("keys file"))
            .expect("parse");
    for k in &keys {
        assert_eq!(
            redis_keys(&k.namespace, &k.key).value,
            k.redis_key,
            "{:?}",
            k.key
        );
    }
    // The committed files are what this build generates (no silent drift).
    let (env_now, keys_now) = generate();
    assert_eq!(keys_now, keys);
    for (a, b) in env_now.good.iter().zip(&env.good) {
        if b.encode_exact {
            assert_eq!(a, b);
        }
    }
    assert_eq!(env_now.bad, env.bad);
}

/// Bus messages (format v1, `bus.rs`): every kind, and malformed input.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct BusVector {
    name: String,
    /// `keys`, `released`, `tags`, `generation`, `tags_created`,
    /// `generation_created`, or `invalid` (must not decode).
    kind: String,
    origin_hex: String,
    sent_ms: u64,
    names: Vec<String>,
    versions: Vec<u64>,
    encoded_hex: String,
}

fn bus_vectors() -> Vec<BusVector> {
    use stratacache::bus::{BusEvent, BusMessage};
    let origin = [0x5a; 16];
    let sent_ms = 1_767_225_600_000;
    let tags = |v: &[(&str, u64)]| v.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect();
    let cases: Vec<(&str, BusEvent)> = vec![
        ("keys", BusEvent::Keys(vec!["user:1".into(), "ключ".into()])),
        ("released", BusEvent::Released(vec!["user:1".into()])),
        (
            "tags",
            BusEvent::Tags(tags(&[("product:7", 0x0123_4567_89ab_cdef), ("t", 1)])),
        ),
        ("generation", BusEvent::Generation(0xfeed_beef)),
        ("tags_created", BusEvent::TagsCreated(tags(&[("x", 3)]))),
        ("generation_created", BusEvent::GenerationCreated(5)),
    ];
    let mut out = Vec::new();
    for (kind, event) in cases {
        let (names, versions) = match &event {
            BusEvent::Keys(k) | BusEvent::Released(k) => (k.clone(), vec![]),
            BusEvent::Tags(t) | BusEvent::TagsCreated(t) => (
                t.iter().map(|(n, _)| n.clone()).collect(),
                t.iter().map(|(_, v)| *v).collect(),
            ),
            BusEvent::Generation(g) | BusEvent::GenerationCreated(g) => (vec![], vec![*g]),
            _ => unreachable!("every kind is listed"),
        };
        let msg = BusMessage {
            origin,
            sent_ms,
            event,
        };
        out.push(BusVector {
            name: kind.to_owned(),
            kind: kind.to_owned(),
            origin_hex: hex::encode(origin),
            sent_ms,
            names,
            versions,
            encoded_hex: hex::encode(msg.encode()),
        });
    }
    let keys = hex::decode(&out[0].encoded_hex).expect("hex");
    let mut bad = |name: &str, bytes: Vec<u8>| {
        out.push(BusVector {
            name: name.to_owned(),
            kind: "invalid".into(),
            origin_hex: String::new(),
            sent_ms: 0,
            names: vec![],
            versions: vec![],
            encoded_hex: hex::encode(bytes),
        })
    };
    bad("truncated", keys[..keys.len() - 1].to_vec());
    bad("trailing_byte", [&keys[..], &[0]].concat());
    let mut v2 = keys.clone();
    v2[3] = 2;
    bad("newer_version", v2);
    let mut k9 = keys.clone();
    k9[4] = 9;
    bad("unknown_kind", k9);
    bad("empty", vec![]);
    out
}

#[test]
fn bus_vectors_hold_byte_for_byte() {
    use stratacache::bus::BusMessage;
    let path = vectors_dir().join("bus_v1.json");
    let generated = bus_vectors();
    if std::env::var_os("STRATACACHE_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("json") + "\n";
        std::fs::write(&path, text).expect("write vectors");
    }
    let stored: Vec<BusVector> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("tests/vectors/bus_v1.json"))
            .expect("parse");
    assert_eq!(
        stored, generated,
        "the encoder still produces the stored bytes"
    );
    for v in &stored {
        let bytes = hex::decode(&v.encoded_hex).expect("hex");
        let decoded = BusMessage::decode(&bytes);
        if v.kind == "invalid" {
            assert_eq!(decoded, None, "{} must not decode", v.name);
        } else {
            let m = decoded.unwrap_or_else(|| panic!("{} decodes", v.name));
            assert_eq!(hex::encode(m.origin), v.origin_hex);
            assert_eq!(m.sent_ms, v.sent_ms);
            assert_eq!(m.encode(), bytes, "{} round-trips", v.name);
        }
    }
}
