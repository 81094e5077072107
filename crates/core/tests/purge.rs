//! Purges sent to the edges when tags are invalidated, against a local
//! HTTP server standing in for each vendor's API: it checks every request
//! against the vendor's documented shape (method, path, headers, body,
//! batch limits) and answers as told (200, 500, 400, or never).

#[macro_use]
mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Target;
use serde_json::Value;
use stratacache::http::edge::{EdgeTags, OVERFLOW_TAG};
use stratacache::purge::EdgePurge;
use stratacache::{Cache, Stats};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request the server received.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// How the server answers the next requests (then 200).
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// A status with `Retry-After: <seconds>`.
    RetryAfter(u16, u64),
    Never,
}

struct Server {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let script: Arc<Mutex<VecDeque<Answer>>> = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (g, s) = (g.clone(), s.clone());
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut r = BufReader::new(r);
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("").to_owned();
                        let path = parts.next().unwrap_or("").to_owned();
                        let mut headers = Vec::new();
                        loop {
                            let mut h = String::new();
                            r.read_line(&mut h).await.expect("header");
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            let (k, v) = h.split_once(':').expect("header line");
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                        }
                        let len: usize = headers
                            .iter()
                            .find(|(k, _)| k == "content-length")
                            .map_or(0, |(_, v)| v.parse().expect("length"));
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).await.expect("body");
                        g.lock().expect("lock").push(Got {
                            method,
                            path,
                            headers,
                            body,
                        });
                        let answer = s.lock().expect("lock").pop_front();
                        match answer.unwrap_or(Answer::Status(200)) {
                            Answer::Never => {
                                // Hold the connection, answer nothing.
                                std::future::pending::<()>().await;
                            }
                            Answer::Status(code) | Answer::RetryAfter(code, _) => {
                                let after = match answer {
                                    Some(Answer::RetryAfter(_, s)) => {
                                        format!("retry-after: {s}\r\n")
                                    }
                                    _ => String::new(),
                                };
                                let reply = format!(
                                    "HTTP/1.1 {code} X\r\n{after}content-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
                                );
                                if w.write_all(reply.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Server { url, got, script }
    }

    fn then(&self, answers: &[Answer]) {
        self.script
            .lock()
            .expect("lock")
            .extend(answers.iter().copied());
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }
}

fn cache(ns: &str, edges: &str) -> Cache {
    Cache::builder()
        .namespace(ns)
        .isolated(true)
        .edge_purge(EdgePurge::parse_list(edges).expect("edges"))
        .build()
        .expect("cache")
}

async fn settle(c: &Cache) -> Stats {
    assert!(
        c.flush_edge_purges(Duration::from_secs(20)).await,
        "purges settled"
    );
    c.stats().await
}

/// Every vendor, one invalidation: each gets its documented request, with
/// the invalidated tags in its own form and the overflow tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vendor_gets_its_documented_request() {
    let s = Server::start().await;
    let u = &s.url;
    let edges = format!(
        r#"[
          {{"kind":"varnish","url":"{u}/varnish","linger_ms":0}},
          {{"kind":"fastly","service_id":"svc1","token":"ftok","api_base":"{u}","soft":true,"linger_ms":0}},
          {{"kind":"cloudflare","zone_id":"zone1","token":"cftok","api_base":"{u}","linger_ms":0}},
          {{"kind":"cloudfront","distribution_id":"DIST1","access_key_id":"AKIDTEST","secret_access_key":"s","api_base":"{u}","linger_ms":0}},
          {{"kind":"akamai","host":"akab.example","client_token":"ct","client_secret":"cs","access_token":"at","api_base":"{u}","soft":true,"linger_ms":0}},
          {{"kind":"webhook","url":"{u}/hook?key=k","secret":"whsec","headers":{{"X-Env":"test"}},"linger_ms":0}}
        ]"#
    );
    let c = cache("purge-vendors", &edges);
    c.invalidate_tags(&["product:7", "a b"])
        .await
        .expect("invalidate");
    let st = settle(&c).await;
    assert_eq!(st.edge_purges, 6, "{st:?}");
    assert_eq!(st.edge_purge_tags, 6 * 3);
    assert_eq!(
        (
            st.edge_purge_failures,
            st.edge_purge_retries,
            st.edge_purge_pending
        ),
        (0, 0, 0)
    );
    let got = s.got();
    let by = |p: &str| -> Got {
        got.iter()
            .find(|g| g.path.starts_with(p))
            .unwrap_or_else(|| panic!("no request to {p}: {got:?}"))
            .clone()
    };
    let sk = EdgeTags::for_header("Surrogate-Key").expect("header");
    let hashed = sk.edge_tag("a b");
    assert!(hashed.starts_with("h-"));

    let v = by("/varnish");
    assert_eq!(v.method, "PURGE");
    assert_eq!(
        v.header("xkey-purge"),
        Some(format!("product:7 {hashed} {OVERFLOW_TAG}").as_str())
    );

    let f = by("/service/");
    assert_eq!(
        (f.method.as_str(), f.path.as_str()),
        ("POST", "/service/svc1/purge")
    );
    assert_eq!(f.header("fastly-key"), Some("ftok"));
    assert_eq!(f.header("fastly-soft-purge"), Some("1"));
    assert_eq!(
        f.json()["surrogate_keys"],
        serde_json::json!(["product:7", hashed, OVERFLOW_TAG])
    );

    let cf = by("/client/v4/zones/");
    assert_eq!(cf.path, "/client/v4/zones/zone1/purge_cache");
    assert_eq!(cf.header("authorization"), Some("Bearer cftok"));
    assert_eq!(cf.json()["tags"].as_array().map(Vec::len), Some(3));

    let aws = by("/2020-05-31/");
    assert_eq!(aws.path, "/2020-05-31/distribution/DIST1/invalidation");
    let auth = aws.header("authorization").expect("sigv4");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
            && auth.contains("/us-east-1/cloudfront/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="),
        "{auth}"
    );
    assert!(
        aws.header("x-amz-date")
            .is_some_and(|d| d.len() == 16 && d.ends_with('Z'))
    );
    let xml = String::from_utf8(aws.body.clone()).expect("xml");
    assert!(
        xml.contains("<Quantity>3</Quantity>") && xml.contains("<Path>#product:7</Path>"),
        "{xml}"
    );

    let ak = by("/ccu/v3/");
    assert_eq!(ak.path, "/ccu/v3/invalidate/tag/production");
    let auth = ak.header("authorization").expect("edgegrid");
    assert!(
        auth.starts_with("EG1-HMAC-SHA256 client_token=ct;access_token=at;timestamp=")
            && auth.contains(";nonce=")
            && auth.contains(";signature="),
        "{auth}"
    );
    // Akamai refuses ':' in tags: hashed, as its header wrote it.
    let akamai_form = EdgeTags::for_header("Edge-Cache-Tag")
        .expect("h")
        .edge_tag("product:7");
    assert_eq!(ak.json()["objects"][0], akamai_form.as_str());

    let w = by("/hook");
    assert_eq!(w.path, "/hook?key=k");
    assert_eq!(w.header("x-env"), Some("test"));
    assert_eq!(
        w.json(),
        serde_json::json!({"namespace":"purge-vendors","tags":["product:7","a b",OVERFLOW_TAG],"soft":false})
    );
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"whsec").expect("key");
    mac.update(&w.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(w.header("x-stratacache-signature"), Some(want.as_str()));
}

/// Invalidations queued within the linger go out as one deduplicated
/// request; a large one is cut at the vendor's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_deduplicated_and_cut_at_the_limit() {
    let s = Server::start().await;
    let edges = format!(
        r#"[{{"kind":"fastly","service_id":"s","token":"t","api_base":"{}","linger_ms":500}}]"#,
        s.url
    );
    let c = cache("purge-batch", &edges);
    for _ in 0..200 {
        c.invalidate_tags(&["a", "b"]).await.expect("invalidate");
        c.invalidate_tags(&["b", "c"]).await.expect("invalidate");
    }
    let st = settle(&c).await;
    assert_eq!(st.edge_purges, 1);
    let got = s.got();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json()["surrogate_keys"],
        serde_json::json!(["a", "b", "c", OVERFLOW_TAG])
    );

    // 2,000 tags: 2,001 keys with the overflow tag, 256 per request.
    let many: Vec<String> = (0..2000).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    c.invalidate_tags(&refs).await.expect("invalidate");
    let st = settle(&c).await;
    let got = s.got();
    assert_eq!(got.len(), 1 + 8);
    let sizes: Vec<usize> = got[1..]
        .iter()
        .map(|g| g.json()["surrogate_keys"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [256, 256, 256, 256, 256, 256, 256, 209]);
    assert_eq!(st.edge_purge_tags, 4 + 2001);
}

/// A 5xx is retried until it succeeds; a 400 is given up at once; an edge
/// that never answers times out, is retried, then given up. None of it
/// holds up `invalidate_tags`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_give_ups_and_hangs() {
    let s = Server::start().await;
    let edges = format!(
        r#"[{{"kind":"cloudflare","zone_id":"z","token":"t","api_base":"{}","linger_ms":0,"timeout_ms":300,"max_attempts":3}}]"#,
        s.url
    );
    let c = cache("purge-retry", &edges);

    s.then(&[Answer::Status(500), Answer::Status(503)]);
    c.invalidate_tags(&["x"]).await.expect("invalidate");
    let st = settle(&c).await;
    assert_eq!(
        (
            st.edge_purges,
            st.edge_purge_retries,
            st.edge_purge_failures
        ),
        (1, 2, 0)
    );
    assert_eq!(s.got().len(), 3);

    s.then(&[Answer::Status(400)]);
    c.invalidate_tags(&["y"]).await.expect("invalidate");
    let st = settle(&c).await;
    assert_eq!(
        (
            st.edge_purges,
            st.edge_purge_retries,
            st.edge_purge_failures
        ),
        (1, 2, 1)
    );
    assert_eq!(s.got().len(), 4);

    s.then(&[Answer::Never, Answer::Never, Answer::Never]);
    c.invalidate_tags(&["z"]).await.expect("invalidate");
    // The edge is holding the request: the invalidation is done, and
    // nothing else waits on it.
    common::until("the edge holds z", || async { s.got().len() == 5 }).await;
    assert!(!c.flush_edge_purges(Duration::from_millis(50)).await);
    c.invalidate_tags(&["w"]).await.expect("invalidate");
    let st = settle(&c).await;
    // Three attempts timed out ("z"); then "w" went through.
    assert_eq!(st.edge_purge_failures, 2, "{st:?}");
    assert_eq!(st.edge_purge_retries, 2 + 2);
    assert_eq!(st.edge_purges, 2);
    let last = s.got().pop().expect("request");
    assert_eq!(last.json()["tags"], serde_json::json!(["w", OVERFLOW_TAG]));
    // A rate limit: the next attempt waits the edge's Retry-After.
    s.then(&[Answer::RetryAfter(429, 1)]);
    let t0 = std::time::Instant::now();
    c.invalidate_tags(&["r"]).await.expect("invalidate");
    let st = settle(&c).await;
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!((st.edge_purges, st.edge_purge_retries), (3, 5));
    let text = c.metrics_text().await;
    assert!(
        text.contains("stratacache_edge_purge_failures_total{namespace=\"purge-retry\"} 2"),
        "{text}"
    );
}

on_both!(once_per_fleet, a_write_purges_what_was_built_from_the_key);

/// Two processes share a namespace through Redis: the one that
/// invalidates sends the purge; the other, told by the bus, sends none.
async fn once_per_fleet(t: Target) {
    let s = Server::start().await;
    let edges = EdgePurge::parse_list(&format!(
        r#"[{{"kind":"varnish","url":"{}/","linger_ms":0}}]"#,
        s.url
    ))
    .expect("edges");
    let ns = common::unique_ns("purge-fleet");
    let a = t
        .builder(&ns)
        .isolated(true)
        .edge_purge(edges.clone())
        .build()
        .expect("a");
    let b = t
        .builder(&ns)
        .isolated(true)
        .edge_purge(edges)
        .build()
        .expect("b");
    for c in [&a, &b] {
        c.get("bus-probe").await.expect("get");
        common::until("the bus subscription", || async {
            c.stats().await.bus_connects > 0
        })
        .await;
    }
    a.invalidate_tags(&["order:1"]).await.expect("invalidate");
    common::until("b heard of it", || async {
        b.stats().await.bus_received > 0
    })
    .await;
    assert!(a.flush_edge_purges(Duration::from_secs(10)).await);
    assert!(b.flush_edge_purges(Duration::from_secs(10)).await);
    let got = s.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].header("xkey-purge"),
        Some(format!("order:1 {OVERFLOW_TAG}").as_str())
    );
    assert_eq!(b.stats().await.edge_purges, 0);
}

/// A response built from a key (read inside a loader's scope) carries the
/// key's dependency as an edge tag; writing the key purges that tag, once,
/// from the writing process. A key nothing was built from purges nothing.
async fn a_write_purges_what_was_built_from_the_key(t: Target) {
    let s = Server::start().await;
    let edges = EdgePurge::parse_list(&format!(
        r#"[{{"kind":"varnish","url":"{}/","linger_ms":0}}]"#,
        s.url
    ))
    .expect("edges");
    let ns = common::unique_ns("purge-keys");
    let a = t
        .builder(&ns)
        .isolated(true)
        .edge_purge(edges.clone())
        .build()
        .expect("a");
    let b = t
        .builder(&ns)
        .isolated(true)
        .edge_purge(edges)
        .build()
        .expect("b");
    let opts = stratacache::WriteOptions::new(
        stratacache::Ttl::After(Duration::from_secs(60)),
        stratacache::Format::RAW,
    );
    a.set("user:1", bytes::Bytes::from_static(b"ada"), &opts)
        .await
        .expect("set");
    a.set("user:2", bytes::Bytes::from_static(b"bob"), &opts)
        .await
        .expect("set");
    let deps = std::sync::Arc::new(stratacache::Deps::new());
    a.get_tracked("user:1", &deps).await.expect("tracked read");
    let names = deps.names();
    assert_eq!(names.len(), 1, "{names:?}");
    let sk = EdgeTags::for_header("Surrogate-Key").expect("header");
    let edge_tag = sk.edge_tag(&names[0]);
    assert!(edge_tag.starts_with("h-"));
    assert!(a.flush_edge_purges(Duration::from_secs(10)).await);
    assert!(
        s.got().is_empty(),
        "writes of keys nothing depended on purge nothing"
    );

    // Another process writes the key: it sends the purge.
    b.set("user:1", bytes::Bytes::from_static(b"ada2"), &opts)
        .await
        .expect("set");
    b.set("user:2", bytes::Bytes::from_static(b"bob2"), &opts)
        .await
        .expect("set");
    assert!(b.flush_edge_purges(Duration::from_secs(10)).await);
    assert!(a.flush_edge_purges(Duration::from_secs(10)).await);
    let got = s.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].header("xkey-purge"),
        Some(format!("{edge_tag} {OVERFLOW_TAG}").as_str())
    );
}

/// The same without Redis: this process's versions say what depended on
/// the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_write_purges_what_was_built_from_the_key() {
    let s = Server::start().await;
    let c = cache(
        "purge-keys-local",
        &format!(r#"[{{"kind":"varnish","url":"{}/","linger_ms":0}}]"#, s.url),
    );
    let opts = stratacache::WriteOptions::new(
        stratacache::Ttl::After(Duration::from_secs(60)),
        stratacache::Format::RAW,
    );
    c.set("k", bytes::Bytes::from_static(b"1"), &opts)
        .await
        .expect("set");
    let deps = std::sync::Arc::new(stratacache::Deps::new());
    c.get_tracked("k", &deps).await.expect("tracked read");
    c.set("other", bytes::Bytes::from_static(b"1"), &opts)
        .await
        .expect("set");
    assert!(c.flush_edge_purges(Duration::from_secs(10)).await);
    assert!(s.got().is_empty());
    assert!(c.delete("k").await.expect("delete"));
    assert!(c.flush_edge_purges(Duration::from_secs(10)).await);
    let tag = EdgeTags::for_header("Surrogate-Key")
        .expect("h")
        .edge_tag(&deps.names()[0]);
    let got = s.got();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        got[0].header("xkey-purge"),
        Some(format!("{tag} {OVERFLOW_TAG}").as_str())
    );
}
