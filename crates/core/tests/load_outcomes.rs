//! The shared table of load outcomes (`tests/vectors/load_outcomes.json`),
//! run through [`Lease::run`] / [`Lease::settle`]: the same table the
//! Python and Node suites run through their `get_or_set`, so every
//! language settles a load the same way. On L1 alone and on Redis.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use stratacache::{Cache, Error, LoadOutcome, Lookup, LookupPolicy, Settled, Ttl, WriteOptions};
use tokio::sync::Notify;

#[derive(Debug)]
struct Boom(String);
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Boom {}

fn table() -> Vec<Value> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/load_outcomes.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("table")).expect("json");
    v["cases"].as_array().expect("cases").clone()
}

fn ms(v: &Value) -> Option<Duration> {
    v.as_u64().map(Duration::from_millis)
}

fn policy(p: &Value) -> LookupPolicy {
    let mut policy = LookupPolicy::default().fail_safe(p["fail_safe"].as_bool().unwrap_or(false));
    if let Some(d) = ms(&p["none_ttl_ms"]) {
        policy = policy.none_ttl(Ttl::After(d));
    }
    if let Some(d) = ms(&p["soft_timeout_ms"]) {
        policy = policy.soft_timeout(d);
    }
    if let Some(d) = ms(&p["hard_timeout_ms"]) {
        policy = policy.hard_timeout(d);
    }
    policy.validate().expect("valid policy");
    policy
}

/// A value as the table writes it: a string, or `null` (the loader's
/// "nothing", stored as empty bytes here).
fn shown(payload: &[u8]) -> Value {
    if payload.is_empty() {
        Value::Null
    } else {
        Value::String(String::from_utf8(payload.to_vec()).expect("utf-8"))
    }
}

/// What a caller gets: the answer, or the error.
async fn read_through<F>(
    cache: &Cache,
    key: &str,
    p: &LookupPolicy,
    load: F,
) -> Result<Value, Error>
where
    F: std::future::Future<Output = LoadOutcome> + Send + 'static,
{
    let opts = WriteOptions::new(Ttl::After(Duration::from_secs(60)), Default::default())
        .with_grace(Duration::from_secs(60));
    match cache.lookup(key, p).await? {
        Lookup::Fresh(e, _) | Lookup::Refresh(e, _) | Lookup::Stale(e, _) => Ok(shown(&e.payload)),
        Lookup::Lead(lease) => match lease.run(load, opts).await? {
            Settled::Loaded(e) | Settled::Stale(e) => Ok(shown(&e.payload)),
        },
    }
}

async fn run_case(cache: &Cache, case: &Value) {
    let name = case["name"].as_str().expect("name");
    let key = "k";
    if let Some(prior) = case["prior"].as_str() {
        let o = WriteOptions::new(Ttl::After(Duration::from_secs(60)), Default::default())
            .with_grace(Duration::from_secs(60))
            .with_tags(vec!["prior".into()]);
        cache
            .set(key, Bytes::from(prior.to_owned()), &o)
            .await
            .expect("prior");
        cache
            .invalidate_tags(&["prior"])
            .await
            .expect("make it stale");
    }
    let l = &case["loader"];
    let gate = Arc::new(Notify::new());
    let load = {
        let l = l.clone();
        let gate = gate.clone();
        async move {
            if let Some(v) = l["value"].as_str() {
                LoadOutcome::Value(Bytes::from(v.to_owned()))
            } else if l["nothing"].as_bool() == Some(true) {
                LoadOutcome::Nothing(Bytes::new())
            } else if let Some(v) = l["uncached"].as_str() {
                LoadOutcome::Uncached(Bytes::from(v.to_owned()))
            } else if let Some(m) = l["error"].as_str() {
                LoadOutcome::Failed(Arc::new(Boom(m.to_owned())))
            } else if let Some(v) = l["slow"].as_str() {
                gate.notified().await;
                LoadOutcome::Value(Bytes::from(v.to_owned()))
            } else {
                panic!("unknown loader {l}")
            }
        }
    };
    if let Some(after) = ms(&l["release_ms"]) {
        let g = gate.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            g.notify_one();
        });
    }
    let got = read_through(cache, key, &policy(&case["policy"]), load).await;
    let want = &case["expect"];
    if want["timeout"].as_bool() == Some(true) {
        assert!(
            matches!(got, Err(Error::LoaderTimeout(_))),
            "{name}: {got:?}"
        );
    } else if let Some(m) = want["error"].as_str() {
        match got {
            Err(Error::Loader(e)) => assert_eq!(e.to_string(), m, "{name}"),
            other => panic!("{name}: expected the loader's error, got {other:?}"),
        }
    } else {
        assert_eq!(got.expect(name), want["answer"], "{name}");
    }
    gate.notify_one();
    let then = read_through(cache, key, &LookupPolicy::default(), async {
        LoadOutcome::Value(Bytes::from_static(b"again"))
    })
    .await
    .expect(name);
    assert_eq!(then, want["then"], "{name}: then");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_only() {
    for case in table() {
        let cache = Cache::builder()
            .namespace(common::unique_ns("outcomes"))
            .build()
            .expect("cache");
        run_case(&cache, &case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    for case in table() {
        let cache = common::redis_builder(&common::unique_ns("outcomes"))
            .build()
            .expect("cache");
        run_case(&cache, &case).await;
    }
}
