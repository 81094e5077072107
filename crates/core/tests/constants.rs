//! `tests/vectors/constants.json`: what the Python and Node packages take
//! from the core (error codes, value formats, configuration and policy
//! defaults, HTTP constants), written from the core itself. This test fails
//! when the file and the core disagree; the Python and Node suites check
//! their documented defaults and tables against the file. Regenerate after
//! a deliberate change: `STRATACACHE_WRITE_VECTORS=1 cargo test --test constants`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use stratacache::{Config, Error, Format, LookupPolicy};

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn constants() -> Value {
    let c = Config::default();
    let p = LookupPolicy::default();
    json!({
        "about": "Written by crates/core/tests/constants.rs from the core; checked by tests/python/test_constants.py and tests/node/constants.test.js. Durations in milliseconds.",
        "error_codes": Error::ALL_CODES,
        "l2_error_codes": Error::L2_CODES,
        "formats": {
            "raw": Format::RAW.0, "pickle": Format::PICKLE.0, "json": Format::JSON.0,
            "msgpack": Format::MSGPACK.0, "v8": Format::V8.0, "int": Format::INT.0,
            "utf8": Format::UTF8.0,
        },
        "config_defaults": {
            "namespace": c.namespace,
            "l1_enabled": c.l1_enabled,
            "l1_max_bytes": c.l1_max_bytes,
            "default_ttl_ms": c.default_ttl.map(ms),
            "compress_threshold": c.compress_threshold,
            "max_value_bytes": c.max_value_bytes,
            "connect_timeout_ms": ms(c.connect_timeout),
            "op_timeout_ms": ms(c.op_timeout),
            "tombstone_ttl_ms": ms(c.tombstone_ttl),
            "wait_timeout_ms": ms(c.wait_timeout),
            "ttl_jitter": c.ttl_jitter,
            "fleet_lease": c.fleet_lease,
            "track_dependencies": c.track_dependencies,
            "lease_ttl_ms": ms(c.lease_ttl),
            "breaker_threshold": c.breaker_threshold,
            "breaker_cooldown_ms": ms(c.breaker_cooldown),
        },
        "policy_defaults": {
            "allow_stale": p.allow_stale,
            "fail_safe": p.fail_safe,
            "fail_safe_throttle_ms": ms(p.fail_safe_throttle),
            "on_wait_timeout": "load",
        },
        "http": {
            "refresh_header": stratacache::http::REFRESH_HEADER,
            "conditional_headers": stratacache::http::CONDITIONAL_HEADERS,
        },
    })
}

#[test]
fn the_file_is_the_cores() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/constants.json");
    let want = constants();
    if std::env::var_os("STRATACACHE_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&want).expect("json") + "\n";
        std::fs::write(&path, text).expect("write");
    }
    let got: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("tests/vectors/constants.json"))
            .expect("json");
    assert_eq!(
        got, want,
        "tests/vectors/constants.json differs from the core: regenerate it with STRATACACHE_WRITE_VECTORS=1 cargo test --test constants"
    );
}
