//! Golden vectors of HTTP request keys: `tests/vectors/http_keys.json`,
//! checked here and by the Python and Node suites through their bindings,
//! so every language derives the same key for the same request. Regenerate
//! only for a deliberate format change:
//! `STRATACACHE_WRITE_VECTORS=1 cargo test --test http_vectors`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stratacache::http::{Exchange, Route, RouteOptions, Step};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Vector {
    name: String,
    vary: Vec<String>,
    shared_cookies: Vec<String>,
    private_headers: Vec<String>,
    keyed: bool,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    /// What `key_by` answers, when the request is private.
    principal: Option<String>,
    /// `pass:<reason>`, or the key to look up.
    outcome: String,
}

fn outcome(v: &Vector) -> String {
    let route = Route::new(RouteOptions {
        ttl: Duration::from_secs(60),
        vary: v.vary.clone(),
        shared_cookies: v.shared_cookies.clone(),
        private_headers: v.private_headers.clone(),
        keyed: v.keyed,
        ..RouteOptions::default()
    })
    .expect("route");
    let mut ex = Exchange::new(
        Arc::new(route),
        &v.method,
        &v.path,
        v.query.clone(),
        v.headers.clone(),
    );
    let mut step = ex.start();
    if step == Step::Principal {
        step = ex.set_principal(v.principal.clone());
    }
    match step {
        Step::Lookup(k) | Step::Refresh(k) | Step::Peek(k) => k,
        Step::Pass(b) => format!("pass:{}", b.detail()),
        Step::Unsafe => "unsafe".to_owned(),
        Step::Principal => unreachable!("principal given"),
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn generate() -> Vec<Vector> {
    let v = |name: &str, query: &[(&str, &str)], headers: &[(&str, &str)]| Vector {
        name: name.to_owned(),
        vary: vec!["Accept-Language".into()],
        shared_cookies: vec!["_ga".into()],
        private_headers: vec!["x-api-key".into()],
        keyed: true,
        method: "GET".into(),
        path: "/items/1".into(),
        query: pairs(query),
        headers: pairs(headers),
        principal: None,
        outcome: String::new(),
    };
    let mut out = vec![
        v("plain", &[], &[]),
        v("query", &[("a", "1"), ("b", "2")], &[]),
        v("query reordered", &[("b", "2"), ("a", "1")], &[]),
        v("NUL-joined pair", &[("a", "1\0q:b=2")], &[]),
        v("escaped '=' in a name", &[("x=1", "2")], &[]),
        v("escaped '=' in a value", &[("x", "1=2")], &[]),
        v("repeated names 2,1", &[("s", "2"), ("s", "1")], &[]),
        v("repeated names 1,2", &[("s", "1"), ("s", "2")], &[]),
        v("unicode", &[("q", "ünï cødé")], &[]),
        v("varied header", &[], &[("accept-language", "fr")]),
        v("varied header, empty", &[], &[("Accept-Language", "")]),
        v("shared cookie only", &[], &[("cookie", "_ga=1")]),
        v("private cookie", &[], &[("cookie", "_ga=1; sessionId=s")]),
        v("api key", &[], &[("x-api-key", "k")]),
        v("authorization", &[], &[("authorization", "Bearer a")]),
        v("host", &[], &[("host", "shop.example")]),
        v("another host", &[], &[("Host", "evil.example")]),
    ];
    let n = out.len();
    out[n - 5].principal = Some("alice".into());
    out[n - 4].principal = Some("bob".into());
    let mut unkeyed = v("private, no key_by", &[], &[("authorization", "Bearer a")]);
    unkeyed.keyed = false;
    out.push(unkeyed);
    let mut head = v("HEAD shares GET's key", &[("a", "1"), ("b", "2")], &[]);
    head.method = "HEAD".into();
    out.push(head);
    let mut post = v("POST", &[], &[]);
    post.method = "POST".into();
    out.push(post);
    for x in &mut out {
        x.outcome = outcome(x);
    }
    out
}

#[test]
fn http_keys_hold() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/http_keys.json");
    if std::env::var_os("STRATACACHE_WRITE_VECTORS").is_some() {
        let json = serde_json::to_string_pretty(&generate()).expect("json") + "\n";
        std::fs::write(&path, json).expect("write");
    }
    let vectors: Vec<Vector> =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors file"))
            .expect("parse");
    assert_eq!(vectors, generate(), "the key derivation changed");
    for v in &vectors {
        assert_eq!(outcome(v), v.outcome, "{}", v.name);
    }
    // The pairs the issue found poisonable are distinct.
    let key = |name: &str| &vectors.iter().find(|v| v.name == name).expect(name).outcome;
    assert_eq!(key("query"), key("query reordered"));
    assert_eq!(key("query"), key("HEAD shares GET's key"));
    assert_ne!(key("query"), key("NUL-joined pair"));
    assert_ne!(key("escaped '=' in a name"), key("escaped '=' in a value"));
    assert_ne!(key("repeated names 2,1"), key("repeated names 1,2"));
    assert_ne!(key("varied header"), key("varied header, empty"));
    assert_eq!(key("plain"), key("shared cookie only"));
    assert_ne!(key("private cookie"), key("authorization"));
    assert_ne!(key("host"), key("another host"));
    assert_ne!(key("plain"), key("host"));
}
