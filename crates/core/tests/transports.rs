//! Other ways to reach a standalone Redis: a unix socket, TLS
//! (`rediss://`) verified against the throwaway CA `scripts/with-redis.sh`
//! made, and Valkey's URL schemes (`valkey://`, `valkeys://`: Valkey speaks
//! Redis's protocol; Debian 12 has no Valkey server, so they are checked
//! against Redis). One test per transport; this binary changes `SSL_CERT_FILE` for
//! its own process only, before any thread exists.

mod common;

use bytes::Bytes;
use stratacache::{Cache, WriteOptions};

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the tests with `make test`"))
}

fn round_trip(url: String) {
    let ns = common::unique_ns("transport");
    let a = Cache::builder()
        .redis_url(&url)
        .namespace(&ns)
        .build()
        .expect("cache");
    let b = Cache::builder()
        .redis_url(&url)
        .namespace(&ns)
        .l1_enabled(false)
        .build()
        .expect("cache");
    stratacache::runtime::block_on(async {
        a.set(
            "k",
            Bytes::from_static(b"over the wire"),
            &WriteOptions::default(),
        )
        .await
        .expect("set");
        let got = b.get("k").await.expect("get").expect("hit from L2");
        assert_eq!(&got.payload[..], b"over the wire");
        assert_eq!(
            b.incr("missing", 1).await.err().map(|e| e.code()),
            Some("E_NOT_FOUND")
        );
    });
    // A sync caller (this thread): its round trips carried here, over the
    // pool's blocking connection on the same transport.
    use stratacache::runtime::block_on_sync;
    let got = block_on_sync(b.get("k"))
        .expect("sync get")
        .expect("hit from L2");
    assert_eq!(&got.payload[..], b"over the wire");
    block_on_sync(b.set("k", Bytes::from_static(b"sync"), &WriteOptions::default()))
        .expect("sync set");
    let got = block_on_sync(b.get("k"))
        .expect("sync get")
        .expect("hit from L2");
    assert_eq!(&got.payload[..], b"sync");
    assert_eq!(
        block_on_sync(b.incr("missing", 1)).err().map(|e| e.code()),
        Some("E_NOT_FOUND")
    );
}

#[test]
fn unix_socket_and_tls() {
    // SAFETY: set before this process starts any other thread (single test
    // in this binary; the runtime is created afterwards).
    unsafe { std::env::set_var("SSL_CERT_FILE", env("STRATACACHE_TLS_CA")) };
    round_trip(env("STRATACACHE_UNIX_URL"));
    round_trip(env("STRATACACHE_TLS_URL"));
    round_trip(common::redis_url().replacen("redis://", "valkey://", 1));
    round_trip(env("STRATACACHE_TLS_URL").replacen("rediss://", "valkeys://", 1));
}
