//! Each vendor's request shape and batching limits, and the parsing of
//! the edge list (errors name the field, never a credential).

use super::*;

fn one(json: &str) -> EdgePurge {
    let mut v = EdgePurge::parse_list(json).expect("parses");
    assert_eq!(v.len(), 1);
    v.remove(0)
}

fn tags(n: usize, len: usize) -> Vec<String> {
    (0..n).map(|i| format!("{i:0len$}")).collect()
}

fn header<'a>(r: &'a PurgeRequest, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn body(r: &PurgeRequest) -> serde_json::Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

#[test]
fn fastly_batches_256_keys_with_its_token_and_soft_header() {
    let e =
        one(r#"{"kind":"fastly","service_id":"SU1Z0isxPaozGVKXdv0eY","token":"tok","soft":true}"#);
    let reqs = e.requests("ns", &tags(600, 4));
    assert_eq!(
        reqs.iter().map(|r| r.tags).collect::<Vec<_>>(),
        [256, 256, 88]
    );
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.url,
        "https://api.fastly.com/service/SU1Z0isxPaozGVKXdv0eY/purge"
    );
    assert_eq!(header(r, "fastly-key"), Some("tok"));
    assert_eq!(header(r, "fastly-soft-purge"), Some("1"));
    assert_eq!(header(r, "content-type"), Some("application/json"));
    assert_eq!(body(r)["surrogate_keys"][0], "0000");
    assert_eq!(
        body(&reqs[2])["surrogate_keys"].as_array().map(Vec::len),
        Some(88)
    );
    let hard = one(r#"{"kind":"fastly","service_id":"s","token":"t"}"#);
    assert_eq!(
        header(&hard.requests("ns", &tags(1, 1))[0], "fastly-soft-purge"),
        None
    );
}

#[test]
fn cloudflare_batches_100_tags_with_a_bearer_token() {
    let e =
        one(r#"{"kind":"cloudflare","zone_id":"023e105f4ecef8ad9ca31a8372d0c353","token":"cf"}"#);
    let reqs = e.requests("ns", &tags(250, 3));
    assert_eq!(
        reqs.iter().map(|r| r.tags).collect::<Vec<_>>(),
        [100, 100, 50]
    );
    assert_eq!(
        reqs[0].url,
        "https://api.cloudflare.com/client/v4/zones/023e105f4ecef8ad9ca31a8372d0c353/purge_cache"
    );
    assert_eq!(header(&reqs[0], "authorization"), Some("Bearer cf"));
    assert_eq!(body(&reqs[1])["tags"][0], "100");
    // Cloudflare purges always remove.
    let err =
        EdgePurge::parse_list(r#"[{"kind":"cloudflare","zone_id":"z","token":"t","soft":true}]"#)
            .expect_err("soft refused");
    assert!(err.to_string().contains("edge_purge[0].soft"), "{err}");
}

#[test]
fn cloudfront_sends_an_invalidation_batch_of_hash_items() {
    let e = one(
        r#"{"kind":"cloudfront","distribution_id":"EDFDVBD6EXAMPLE","access_key_id":"AKID","secret_access_key":"s"}"#,
    );
    let reqs = e.requests("ns", &["product:7".to_owned(), "catalog".to_owned()]);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        r.url,
        "https://cloudfront.amazonaws.com/2020-05-31/distribution/EDFDVBD6EXAMPLE/invalidation"
    );
    let xml = String::from_utf8(r.body.clone()).expect("utf-8");
    assert!(xml.contains(
        r#"<InvalidationBatch xmlns="http://cloudfront.amazonaws.com/doc/2020-05-31/">"#
    ));
    assert!(xml.contains("<Paths><Quantity>2</Quantity><Items><Path>#product:7</Path><Path>#catalog</Path></Items></Paths>"));
    assert!(xml.contains("<CallerReference>stratacache-"));
    // Every batch has its own caller reference (CloudFront refuses a
    // reused one with other paths).
    assert_ne!(
        r.body,
        e.requests("ns", &["product:7".to_owned(), "catalog".to_owned()])[0].body
    );
    assert_eq!(e.requests("ns", &tags(2500, 4)).len(), 3);
}

#[test]
fn akamai_keeps_each_body_under_50000_bytes() {
    let e = one(
        r#"{"kind":"akamai","host":"akab-h.purge.akamaiapis.net","client_token":"ct","client_secret":"cs","access_token":"at"}"#,
    );
    let many = tags(2000, 128);
    let reqs = e.requests("ns", &many);
    assert!(reqs.len() > 1);
    assert_eq!(reqs.iter().map(|r| r.tags).sum::<usize>(), 2000);
    // Short tags: 500 a request (the cache-tag bucket refuses more whole).
    let short = e.requests("ns", &tags(1200, 4));
    assert_eq!(
        short.iter().map(|r| r.tags).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for r in &reqs {
        assert!(r.body.len() <= 50_000, "{}", r.body.len());
        assert_eq!(
            r.url,
            "https://akab-h.purge.akamaiapis.net/ccu/v3/delete/tag/production"
        );
        assert_eq!(body(r)["objects"].as_array().map(Vec::len), Some(r.tags));
    }
    let soft = one(
        r#"{"kind":"akamai","host":"h","client_token":"ct","client_secret":"cs","access_token":"at","soft":true,"network":"staging"}"#,
    );
    assert_eq!(
        soft.requests("ns", &tags(1, 1))[0].url,
        "https://h/ccu/v3/invalidate/tag/staging"
    );
    // Akamai's tag rules: ':' is refused there, so such a tag is hashed,
    // the same way the Edge-Cache-Tag header wrote it.
    assert!(e.edge_form("product:7").starts_with("h-"));
    assert_eq!(
        e.edge_form("product:7"),
        crate::http::edge::EdgeTags::for_header("Edge-Cache-Tag")
            .expect("header")
            .edge_tag("product:7")
    );
}

#[test]
fn varnish_sends_keys_in_a_header_under_8k() {
    let e = one(
        r#"{"kind":"varnish","url":"http://127.0.0.1:6081/","headers":{"X-Purge-Secret":"s3"}}"#,
    );
    let reqs = e.requests("ns", &tags(2000, 20));
    assert!(reqs.len() > 1);
    assert_eq!(reqs.iter().map(|r| r.tags).sum::<usize>(), 2000);
    for r in &reqs {
        assert_eq!(r.method, "PURGE");
        assert_eq!(r.url, "http://127.0.0.1:6081/");
        let keys = header(r, "xkey-purge").expect("keys");
        assert!(keys.len() <= 8000);
        assert_eq!(keys.split(' ').count(), r.tags);
        assert_eq!(header(r, "x-purge-secret"), Some("s3"));
    }
    let soft = one(r#"{"kind":"varnish","url":"http://v/","soft":true}"#);
    assert!(header(&soft.requests("ns", &tags(1, 1))[0], "xkey-softpurge").is_some());
}

#[test]
fn webhook_posts_raw_tags_with_the_namespace() {
    let e = one(r#"{"kind":"webhook","url":"https://hooks.example/purge?k=secret","secret":"w"}"#);
    assert_eq!(e.edge_form("a b,c"), "a b,c");
    let r = &e.requests("shop", &["a b,c".to_owned()])[0];
    assert_eq!(r.url, "https://hooks.example/purge?k=secret");
    assert_eq!(
        body(r),
        serde_json::json!({"namespace": "shop", "tags": ["a b,c"], "soft": false})
    );
    // Logs show the origin only: the query may hold a secret.
    assert_eq!(e.label(), "https://hooks.example");
}

#[test]
fn parse_errors_name_the_field_and_never_a_secret() {
    let cases = [
        (
            r#"[{"kind":"fastly","token":"sekrit"}]"#,
            "edge_purge[0].service_id is required",
        ),
        (r#"[{"kind":"nope"}]"#, "edge_purge[0].kind"),
        (
            r#"[{"kind":"varnish","url":"ftp://x"}]"#,
            "edge_purge[0].url",
        ),
        (
            r#"[{"kind":"varnish","url":"http://x/","max_attempts":0}]"#,
            "max_attempts",
        ),
        (
            r#"[{"kind":"fastly","service_id":"s","token":"sekrit","sevice_id":"x"}]"#,
            "edge_purge[0].sevice_id",
        ),
        (
            r#"[{"kind":"varnish","url":"http://x/","headers":{"a":"b\r\nc"}}]"#,
            "headers.a",
        ),
        (
            r#"[{"kind":"akamai","host":"h","client_token":"c","client_secret":"s","access_token":"a","network":"x"}]"#,
            "network",
        ),
        (r#""varnish""#, "expected a list"),
        (
            r#"[{"kind":"fastly","service_id":"s","token":"sekrit\n"}]"#,
            "edge_purge[0].token has characters",
        ),
        (
            r#"[{"kind":"varnish","url":"http://user:sekrit@v/"}]"#,
            "credentials in the URL",
        ),
        (
            r#"[{"kind":"fastly","service_id":"s","token":"t","api_base":"https://x/?k=sekrit"}]"#,
            "api_base",
        ),
        (
            r#"[{"kind":"akamai","host":"https://akab.example","client_token":"c","client_secret":"s","access_token":"a"}]"#,
            "edge_purge[0].host",
        ),
        (
            r#"[{"kind":"varnish","url":"http://v/","method":"PUR GE"}]"#,
            "method",
        ),
        (
            r#"[{"kind":"varnish","url":"http://v/","linger_ms":600000}]"#,
            "linger_ms",
        ),
        ("{", "not JSON"),
    ];
    for (json, want) in cases {
        let err = EdgePurge::parse_list(json).expect_err(json).to_string();
        assert!(err.contains(want), "{json}: {err}");
        assert!(!err.contains("sekrit"), "{err}");
        assert_eq!(
            EdgePurge::parse_list(json).expect_err(json).code(),
            "E_CONFIG"
        );
    }
    let hint = EdgePurge::parse_list(
        r#"[{"kind":"fastly","service_id":"s","token":"t","sevice_id":"x"}]"#,
    )
    .expect_err("unknown")
    .to_string();
    assert!(hint.contains("did you mean \"service_id\""), "{hint}");
    let e = one(
        r#"{"kind":"cloudfront","distribution_id":"d","access_key_id":"AKID","secret_access_key":"sekrit"}"#,
    );
    let shown = format!("{e:?}");
    assert!(
        !shown.contains("sekrit") && !shown.contains("AKID"),
        "{shown}"
    );
}
