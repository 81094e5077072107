use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::error::Error;

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn route(f: impl FnOnce(&mut RouteOptions)) -> Arc<Route> {
    let mut o = RouteOptions::default();
    f(&mut o);
    Arc::new(Route::new(o).expect("valid route"))
}

fn ex(r: &Arc<Route>, method: &str, url: &str, headers: &[(&str, &str)]) -> Exchange {
    let (path, q) = url.split_once('?').unwrap_or((url, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                k.replace("%00", "\0").replace("%3D", "="),
                v.replace("%00", "\0").replace("%3D", "="),
            )
        })
        .collect();
    Exchange::new(r.clone(), method, path, query, h(headers))
}

fn key_of(e: &mut Exchange) -> String {
    match e.start() {
        Step::Lookup(k) | Step::Refresh(k) | Step::Peek(k) => k,
        other => panic!("expected a lookup, got {other:?}"),
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    a.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn crafted_queries_never_share_a_key() {
    let r = route(|_| {});
    let k = |url: &str| key_of(&mut ex(&r, "GET", url, &[]));
    // The two poisonings found: a NUL-joined pair, an escaped '='.
    assert_ne!(k("/c1?a=1%00q:b=2"), k("/c1?a=1&b=2"));
    assert_ne!(k("/c2?x%3D1=2"), k("/c2?x=1%3D2"));
    // Repeated names keep their order; distinct names are sorted.
    assert_ne!(k("/s?s=2&s=1"), k("/s?s=1&s=2"));
    assert_eq!(k("/s?a=1&b=2"), k("/s?b=2&a=1"));
    assert_eq!(k("/s?s=1&a=0&s=2"), k("/s?a=0&s=1&s=2"));
    assert_ne!(k("/p"), k("/p?a="));
    // GET and HEAD share entries; a HEAD only peeks (never leads).
    assert_eq!(k("/x"), key_of(&mut ex(&r, "HEAD", "/x", &[])));
    assert!(matches!(ex(&r, "HEAD", "/x", &[]).start(), Step::Peek(_)));
    // The host is part of the key (tenants, crafted Host headers).
    let host = |h: &[(&str, &str)]| key_of(&mut ex(&r, "GET", "/x", h));
    assert_ne!(
        host(&[("host", "a.example")]),
        host(&[("Host", "evil.example")])
    );
    assert_eq!(
        host(&[("host", "A.example")]),
        host(&[("host", "a.example")])
    );
    assert_ne!(host(&[]), host(&[("host", "")]));
    let tag = |h: &[(&str, &str)]| ex(&r, "GET", "/x", h).tags();
    assert_ne!(tag(&[("host", "a.example")]), tag(&[("host", "b.example")]));
}

#[test]
fn absent_and_empty_varied_headers_differ() {
    let r = route(|o| o.vary = vec!["Accept-Language".into()]);
    let none = key_of(&mut ex(&r, "GET", "/l", &[]));
    let empty = key_of(&mut ex(&r, "GET", "/l", &[("accept-language", "")]));
    let fr = key_of(&mut ex(&r, "GET", "/l", &[("Accept-Language", "fr")]));
    assert!(none != empty && empty != fr && none != fr);
}

#[test]
fn private_unless_proven_shared() {
    let r = route(|o| o.shared_cookies = vec!["_ga".into(), "theme".into()]);
    for (headers, private) in [
        (vec![], false),
        (vec![("cookie", "_ga=1; theme=dark")], false),
        (vec![("cookie", "")], false),
        (vec![("cookie", "auth_token=x")], true),
        (vec![("cookie", "_ga=1; sessionId=s")], true),
        (vec![("cookie", "laravel_session=x")], true),
        (vec![("Authorization", "Bearer x")], true),
        (vec![("authorization", "")], false),
    ] {
        let mut e = ex(&r, "GET", "/p", &headers);
        let step = e.start();
        if private {
            assert_eq!(step, Step::Pass(Bypass::Private), "{headers:?}");
        } else {
            assert!(matches!(step, Step::Lookup(_)), "{headers:?}");
        }
    }
    let api = route(|o| o.private_headers = vec!["X-API-Key".into()]);
    assert_eq!(
        ex(&api, "GET", "/p", &[("x-api-key", "k")]).start(),
        Step::Pass(Bypass::Private)
    );
    assert!(matches!(
        ex(&api, "GET", "/p", &[]).start(),
        Step::Lookup(_)
    ));
    let keyed = route(|o| o.keyed = true);
    let mut alice = ex(&keyed, "GET", "/me", &[("authorization", "a")]);
    assert_eq!(alice.start(), Step::Principal);
    let Step::Lookup(ka) = alice.set_principal(Some("alice".into())) else {
        panic!()
    };
    let mut bob = ex(&keyed, "GET", "/me", &[("authorization", "b")]);
    bob.start();
    let Step::Lookup(kb) = bob.set_principal(Some("bob".into())) else {
        panic!()
    };
    let shared = key_of(&mut ex(&keyed, "GET", "/me", &[]));
    assert!(ka.starts_with("http:private:") && shared.starts_with("http:public:"));
    assert!(ka != kb && ka != shared);
    let mut nobody = ex(&keyed, "GET", "/me", &[("authorization", "c")]);
    nobody.start();
    assert_eq!(nobody.set_principal(None), Step::Pass(Bypass::Private));
}

#[test]
fn methods() {
    let r = route(|_| {});
    assert_eq!(
        ex(&r, "OPTIONS", "/", &[]).start(),
        Step::Pass(Bypass::Method)
    );
    let mut post = ex(&r, "POST", "/items/1?x=1", &[]);
    assert_eq!(post.start(), Step::Unsafe);
    let ok = post.on_response(201, &[], b"x".to_vec(), 0.0);
    assert_eq!(ok.invalidate, vec![url_tag("", None, "/items/1")]);
    assert_eq!(ex(&r, "GET", "/items/1?y", &[]).tags(), ok.invalidate);
    let mut failed = ex(&r, "DELETE", "/items/1", &[]);
    failed.start();
    assert!(
        failed
            .on_response(404, &[], vec![], 0.0)
            .invalidate
            .is_empty()
    );
}

#[test]
fn what_may_be_stored() {
    let r = route(|o| o.ttl = Duration::from_secs(60));
    // (status, headers, stored)
    type Case = (u16, &'static [(&'static str, &'static str)], bool);
    let cases: &[Case] = &[
        (200, &[], true),
        (404, &[], false),
        (500, &[], false),
        (200, &[("set-cookie", "a=b")], false),
        (200, &[("cache-control", "no-store")], false),
        (200, &[("Cache-Control", "no-cache")], false),
        (200, &[("cache-control", "max-age=0")], false),
        (200, &[("cache-control", "s-maxage=0, max-age=30")], false),
        (200, &[("cache-control", "Private, max-age=5")], false),
        (200, &[("vary", "*")], false),
        (200, &[("vary", "accept, *")], false),
        (200, &[("cache-control", "public, max-age=9")], true),
    ];
    for &(status, headers, stored) in cases {
        let mut e = ex(&r, "GET", "/", &[]);
        e.start();
        let s = e.on_response(status, &h(headers), b"x".to_vec(), 0.0);
        assert_eq!(s.complete.is_some(), stored, "{status} {headers:?}");
        assert_eq!(s.answer.is_some(), stored, "{status} {headers:?}");
        if !stored {
            assert!(s.bypass.is_some());
        }
    }
    // The handler's max-age shortens the TTL, s-maxage wins for shared
    // entries; neither lengthens it.
    for (cc, ttl_ms) in [
        ("max-age=9", 9_000),
        ("max-age=600", 60_000),
        ("max-age=600, s-maxage=5", 5_000),
    ] {
        let mut e = ex(&r, "GET", "/", &[]);
        e.start();
        let s = e.on_response(200, &h(&[("cache-control", cc)]), vec![], 0.0);
        assert_eq!(s.ttl_ms, ttl_ms, "{cc}");
    }
    // HEAD never stores.
    let mut head = ex(&r, "HEAD", "/", &[]);
    head.start();
    let s = head.on_response(200, &[], vec![], 0.0);
    assert_eq!((s.complete, s.bypass), (None, Some(Bypass::Head)));
}

fn stored_answer(r: &Arc<Route>, req: &[(&str, &str)], resp: &[(&str, &str)]) -> (Vec<u8>, Answer) {
    let mut e = ex(r, "GET", "/a", req);
    e.start();
    let s = e.on_response(200, &h(resp), b"body".to_vec(), 1_700_000_000.0);
    (s.complete.expect("stored"), s.answer.expect("answer"))
}

#[test]
fn answers_keep_the_handlers_directives_and_validate() {
    let r = route(|o| {
        o.ttl = Duration::from_secs(60);
        o.stale_while_revalidate = Duration::from_secs(30);
    });
    let (entry, miss) = stored_answer(
        &r,
        &[],
        &[
            ("Content-Type", "text/plain"),
            ("Cache-Control", "public, max-age=20, must-revalidate"),
            ("Date", "x"),
            ("ETag", "W/\"theirs\""),
            ("Content-Length", "4"),
        ],
    );
    assert_eq!(header(&miss, "x-cache"), Some("MISS"));
    assert_eq!(
        header(&miss, "cache-status"),
        Some("stratacache; fwd=uri-miss; stored")
    );
    assert_eq!(
        header(&miss, "cache-control"),
        Some("public, max-age=20, must-revalidate")
    );
    // The handler's own validator goes out as it sent it.
    assert_eq!(header(&miss, "etag"), Some("W/\"theirs\""));
    assert_eq!(
        header(&miss, "last-modified"),
        Some("Tue, 14 Nov 2023 22:13:20 GMT")
    );
    assert_eq!(header(&miss, "date"), None);
    assert_eq!(header(&miss, "content-length"), Some("4"));
    assert_eq!(miss.body.as_deref(), Some(&b"body"[..]));

    let mut hit = ex(&r, "GET", "/a", &[]);
    hit.start();
    let Found::Answer(a) = hit.on_entry(&entry, false, 1_700_000_005.0) else {
        panic!()
    };
    assert_eq!(header(&a, "age"), Some("5"));
    assert_eq!(header(&a, "x-cache"), Some("HIT"));
    assert_eq!(header(&a, "cache-status"), Some("stratacache; hit; ttl=15"));
    assert_eq!(header(&a, "content-type"), Some("text/plain"));
    assert_eq!(header(&a, "etag"), Some("W/\"theirs\""));
    // ... and validates (weak comparison).
    for inm in ["W/\"theirs\"", "\"theirs\"", "\"x\", W/\"theirs\""] {
        let mut e = ex(&r, "GET", "/a", &[("if-none-match", inm)]);
        e.start();
        let Found::Answer(a) = e.on_entry(&entry, false, 1_700_000_005.0) else {
            panic!()
        };
        assert_eq!(a.status, 304, "{inm}");
    }

    // Generated Cache-Control when the handler sent none.
    let (plain, _) = stored_answer(&r, &[], &[]);
    let mut e = ex(&r, "GET", "/a", &[]);
    e.start();
    let Found::Answer(a) = e.on_entry(&plain, true, 1_700_000_070.0) else {
        panic!()
    };
    assert_eq!(
        header(&a, "cache-control"),
        Some("public, max-age=0, stale-while-revalidate=30")
    );
    assert_eq!(header(&a, "x-cache"), Some("STALE"));
    assert_eq!(
        header(&a, "cache-status"),
        Some("stratacache; hit; ttl=-10")
    );

    // 304: If-None-Match first, then If-Modified-Since.
    for (req, status) in [
        (vec![("if-none-match", etag_for(b"body"))], 304),
        (vec![("if-none-match", "\"nope\"".to_owned())], 200),
        (
            vec![(
                "if-modified-since",
                "Tue, 14 Nov 2023 22:13:20 GMT".to_owned(),
            )],
            304,
        ),
        (
            vec![(
                "if-modified-since",
                "Tue, 14 Nov 2023 22:13:19 GMT".to_owned(),
            )],
            200,
        ),
        (vec![("if-modified-since", "garbage".to_owned())], 200),
        (
            vec![
                ("if-none-match", "\"nope\"".to_owned()),
                (
                    "if-modified-since",
                    "Tue, 14 Nov 2023 22:13:20 GMT".to_owned(),
                ),
            ],
            200,
        ),
    ] {
        let req: Vec<(&str, &str)> = req.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut e = ex(&r, "GET", "/a", &req);
        e.start();
        let Found::Answer(a) = e.on_entry(&plain, false, 1_700_000_001.0) else {
            panic!()
        };
        assert_eq!(a.status, status, "{req:?}");
        assert_eq!(a.body.is_none(), status == 304);
    }

    // HEAD from a GET entry: no body, the entry's Content-Length.
    let mut head = ex(&r, "HEAD", "/a", &[]);
    head.start();
    let Found::Answer(a) = head.on_entry(&plain, false, 1_700_000_001.0) else {
        panic!()
    };
    assert_eq!((a.status, a.body.is_none()), (200, true));
    assert_eq!(header(&a, "content-length"), Some("4"));
}

#[test]
fn a_handlers_vary_is_keyed_and_sent() {
    let r = route(|_| {});
    let req = |lang: &str| ex(&r, "GET", "/v", &[("accept-language", lang)]);
    let mut fr = req("fr");
    let base = key_of(&mut fr);
    let s = fr.on_response(200, &h(&[("Vary", "Accept-Language")]), b"fr".to_vec(), 0.0);
    // The base key gets a marker, the response its variant key.
    let marker = s.complete.expect("marker");
    assert_eq!(
        Stored::decode(&marker),
        Some(Stored::Vary(vec!["accept-language".into()]))
    );
    let (variant, entry) = s.writes[0].clone();
    assert_ne!(variant, base);
    assert_eq!(
        header(s.answer.as_ref().expect("answer"), "vary"),
        Some("accept-language")
    );

    // Another language follows the marker to another key.
    let mut de = req("de");
    assert_eq!(key_of(&mut de), base);
    let Found::Follow(k) = de.on_entry(&marker, false, 0.0) else {
        panic!()
    };
    assert_ne!(k, variant);
    let s = de.on_response(200, &h(&[("vary", "accept-language")]), b"de".to_vec(), 0.0);
    assert!(
        s.writes.is_empty() && s.complete.is_some(),
        "stored where it was read"
    );
    assert_eq!(
        header(s.answer.as_ref().expect("answer"), "cache-status"),
        Some("stratacache; fwd=vary-miss; stored")
    );

    // The same language follows to the same key and is served.
    let mut fr2 = req("fr");
    key_of(&mut fr2);
    assert_eq!(fr2.on_entry(&marker, false, 0.0), Found::Follow(variant));
    let Found::Answer(a) = fr2.on_entry(&entry, false, 0.0) else {
        panic!()
    };
    assert_eq!(a.body.as_deref(), Some(&b"fr"[..]));
    // A marker under a variant key is not followed again.
    assert_eq!(fr2.on_entry(&marker, false, 0.0), Found::Unusable);
    assert_eq!(
        fr2.on_entry(b"SCH1 old format", false, 0.0),
        Found::Unusable
    );
}

#[test]
fn vary_cookie_splits_shared_entries() {
    let r = route(|o| o.shared_cookies = vec!["theme".into()]);
    let mut dark = ex(&r, "GET", "/t", &[("cookie", "theme=dark")]);
    let base = key_of(&mut dark);
    let s = dark.on_response(200, &h(&[("vary", "Cookie")]), b"dark".to_vec(), 0.0);
    let marker = s.complete.expect("marker");
    assert_eq!(
        Stored::decode(&marker),
        Some(Stored::Vary(vec!["cookie".into()]))
    );
    let mut light = ex(&r, "GET", "/t", &[("cookie", "theme=light")]);
    assert_eq!(key_of(&mut light), base);
    let Found::Follow(k) = light.on_entry(&marker, false, 0.0) else {
        panic!()
    };
    assert_ne!(k, s.writes[0].0, "light and dark are separate entries");
}

#[test]
fn stale_if_error_and_request_directives() {
    let r = route(|o| o.stale_if_error = Duration::from_secs(60));
    let mut e = ex(&r, "GET", "/f", &[]);
    e.start();
    let s = e.on_response(503, &[], vec![], 0.0);
    assert!(s.use_stale && s.complete.is_none() && s.bypass == Some(Bypass::Error));
    assert_eq!(s.grace_ms, 60_000);

    // Ignored by default; honoured: a refresh through the flight.
    let nc = [("cache-control", "no-cache")];
    assert!(matches!(ex(&r, "GET", "/f", &nc).start(), Step::Lookup(_)));
    let honor = route(|o| o.request_directives = RequestDirectives::Honor);
    assert!(matches!(
        ex(&honor, "GET", "/f", &nc).start(),
        Step::Refresh(_)
    ));
    let mut m0 = ex(&honor, "GET", "/f", &[("cache-control", "max-age=0")]);
    assert!(matches!(m0.start(), Step::Refresh(_)));
    let s = m0.on_response(200, &[], vec![], 0.0);
    assert_eq!(
        header(s.answer.as_ref().expect("answer"), "cache-status"),
        Some("stratacache; fwd=request; stored")
    );
    assert!(matches!(
        ex(&honor, "GET", "/f", &[]).start(),
        Step::Lookup(_)
    ));
    assert!(RequestDirectives::parse("sometimes").is_err());
}

#[test]
fn routes_are_checked() {
    for bad in [
        RouteOptions {
            ttl: Duration::ZERO,
            ..Default::default()
        },
        RouteOptions {
            vary: vec!["*".into()],
            ..Default::default()
        },
        RouteOptions {
            vary: vec!["a b".into()],
            ..Default::default()
        },
        RouteOptions {
            shared_cookies: vec!["a=b".into()],
            ..Default::default()
        },
    ] {
        assert!(matches!(Route::new(bad), Err(Error::Config(_))));
    }
}

#[test]
fn entries_round_trip() {
    let r = StoredResponse {
        status: 200,
        headers: h(&[("x-quote", "a \"b\" \\ ü \u{1}")]),
        body: b"{}".to_vec(),
        etag: etag_for(b"{}"),
        stored_at: 1.5,
        ttl: 3,
    };
    let enc = Stored::Response(r.clone()).encode();
    assert_eq!(Stored::decode(&enc), Some(Stored::Response(r)));
    for n in 0..24 {
        assert_eq!(Stored::decode(&enc[..n]), None, "{n}");
    }
    let m = Stored::Vary(vec!["accept".into()]);
    assert_eq!(Stored::decode(&m.encode()), Some(m));
    assert_eq!(Stored::decode(b"SCH2\x07"), None);
}

/// Small alphabets, so that distinct requests often look alike.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a=&:q%\\x00;, ]{0,4}").expect("regex")
}

#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    host: Option<String>,
    path: String,
    query: Vec<(String, String)>,
    lang: Option<String>,
    principal: Option<String>,
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop_oneof![Just("GET"), Just("HEAD")],
        proptest::option::of(proptest::string::string_regex("[aA:.\\x00 ]{0,3}").expect("regex")),
        text(),
        proptest::collection::vec((text(), text()), 0..4),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(method, host, path, query, lang, principal)| Req {
            method,
            host,
            path,
            query,
            lang,
            principal,
        })
}

fn canonical(r: &Req) -> impl PartialEq + std::fmt::Debug + '_ {
    let mut q: Vec<&(String, String)> = r.query.iter().collect();
    q.sort_by(|a, b| a.0.cmp(&b.0));
    // GET and HEAD read the same entries; the host is compared as sent
    // lower-cased.
    let host = r.host.as_ref().map(|h| h.to_ascii_lowercase());
    (&r.path, q, &r.lang, &r.principal, host)
}

fn key(route: &Arc<Route>, r: &Req) -> String {
    let headers = r
        .lang
        .iter()
        .map(|l| ("accept-language".to_owned(), l.clone()))
        .chain(
            r.principal
                .iter()
                .map(|p| ("authorization".to_owned(), p.clone())),
        )
        .chain(r.host.iter().map(|h| ("host".to_owned(), h.clone())))
        .collect();
    let mut e = Exchange::new(route.clone(), r.method, &r.path, r.query.clone(), headers);
    match e.start() {
        Step::Lookup(k) | Step::Peek(k) => k,
        Step::Principal => match e.set_principal(r.principal.clone()) {
            Step::Lookup(k) | Step::Peek(k) => k,
            other => panic!("{other:?}"),
        },
        Step::Pass(_) => String::from("pass"),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Two requests share a key exactly when they are the same request up
    /// to the order of distinct query names, the case of the host and
    /// GET versus HEAD (a HEAD reads the GET entry).
    #[test]
    fn keys_are_injective(a in req(), b in req()) {
        let route = route(|o| {
            o.vary = vec!["accept-language".into()];
            o.keyed = true;
        });
        let (ka, kb) = (key(&route, &a), key(&route, &b));
        // An empty Authorization is no credential: such a request is shared.
        let private = |r: &Req| r.principal.as_deref().is_some_and(|p| !p.is_empty());
        if private(&a) == private(&b) && (!private(&a) || a.principal == b.principal) {
            let norm = |r: &Req| Req { principal: if private(r) { r.principal.clone() } else { None }, ..r.clone() };
            let (na, nb) = (norm(&a), norm(&b));
            prop_assert_eq!(ka == kb, canonical(&na) == canonical(&nb), "{:?} {:?}", a, b);
        } else {
            prop_assert_ne!(ka, kb);
        }
    }

    /// Variant keys are injective in the varied values too.
    #[test]
    fn variant_keys_are_injective(a in proptest::collection::vec(proptest::option::of(text()), 2), b in proptest::collection::vec(proptest::option::of(text()), 2)) {
        let names = ["x-a", "x-b"];
        let v = |vals: &[Option<String>]| variant_key("http:public:base", &names.iter().zip(vals).map(|(n, v)| (*n, v.as_deref())).collect());
        prop_assert_eq!(v(&a) == v(&b), a == b);
    }
}

/// `start_local` answers exactly what the stepwise flow would from L1,
/// follows a marker to its variant, and otherwise leaves the exchange as
/// `start` does (so the adapter's own read of the base key follows the
/// marker again).
#[tokio::test]
async fn start_local_answers_from_l1_or_gives_the_first_step() {
    use crate::{Ttl, WriteOptions};
    let cache = Cache::builder()
        .namespace(format!("http-local-{:x}", rand::random::<u64>()))
        .build()
        .expect("cache");
    let store = |k: &str, bytes: &[u8]| {
        let o = WriteOptions::new(Ttl::After(Duration::from_secs(60)), crate::Format::RAW);
        let (k, bytes) = (k.to_owned(), bytes.to_vec());
        let cache = cache.clone();
        async move { cache.set(&k, bytes.into(), &o).await.expect("set") }
    };
    let r = route(|_| {});
    let req = |method: &str, lang: &str, extra: &[(&str, &str)]| {
        let mut hs = vec![("accept-language", lang)];
        hs.extend_from_slice(extra);
        ex(&r, method, "/v", &hs)
    };

    // Nothing stored: the first step, unchanged.
    let mut cold = req("GET", "fr", &[]);
    let base = key_of(&mut req("GET", "fr", &[]));
    assert_eq!(
        cold.start_local(&cache, 0.0),
        Start::Step(Step::Lookup(base.clone()))
    );

    // A response varying on Accept-Language: marker and variant in L1.
    let s = cold.on_response(200, &h(&[("vary", "accept-language")]), b"fr".to_vec(), 0.0);
    store(&base, s.complete.as_deref().expect("marker")).await;
    for (k, bytes) in &s.writes {
        store(k, bytes).await;
    }

    let Start::Answered(a) = req("GET", "fr", &[]).start_local(&cache, 1.0) else {
        panic!("a fresh variant in L1 answers")
    };
    // The same answer as the stepwise flow gives for the same bytes.
    let marker = s.complete.as_deref().expect("marker");
    let mut stepwise = req("GET", "fr", &[]);
    key_of(&mut stepwise);
    let Found::Follow(k) = stepwise.on_entry(marker, false, 1.0) else {
        panic!("the marker names the variant")
    };
    let (_, bytes) = s.writes.iter().find(|(w, _)| *w == k).expect("variant");
    assert_eq!(
        stepwise.on_entry(bytes, false, 1.0),
        Found::Answer(a.clone())
    );
    assert_eq!(a.body.as_deref(), Some(&b"fr"[..]));

    // The marker is there, the variant is not: the first step, and the
    // exchange follows the marker again when the adapter reads it.
    let mut de = req("GET", "de", &[]);
    assert_eq!(
        de.start_local(&cache, 1.0),
        Start::Step(Step::Lookup(base.clone()))
    );
    assert!(matches!(de.on_entry(marker, false, 1.0), Found::Follow(_)));

    // Never from L1: a HEAD (peeks), a private request (bypasses).
    assert!(matches!(
        req("HEAD", "fr", &[]).start_local(&cache, 1.0),
        Start::Step(Step::Peek(_))
    ));
    assert_eq!(
        req("GET", "fr", &[("authorization", "Bearer x")]).start_local(&cache, 1.0),
        Start::Step(Step::Pass(Bypass::Private))
    );
}
