//! Invalidation events from NATS JetStream against a real `nats-server
//! -js` started here (so it can be restarted) and a real Redis: plain and
//! Debezium events (with and without the schema envelope), a poison
//! message, a server restart, two listeners sharing the durable consumer.

#[macro_use]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stratacache::WriteOptions;
use stratacache::feed::EventListener;
use stratacache::feed::events::TableRule;
use stratacache::feed::nats::NatsFeed;

struct Nats {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl Nats {
    fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("stratacache-nats-{}", common::rand_u64()));
        let mut n = Nats {
            child: None,
            port,
            dir,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian: apt-get install nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn publish(url: &str, subject: &str, body: &str) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.publish(subject.to_owned(), Bytes::from(body.to_owned()))
        .await
        .expect("publish")
        .await
        .expect("stored");
}

use common::process_cache as cache;
use common::tagged_for_5m as tagged;

use common::until;

fn v() -> Bytes {
    Bytes::from_static(b"v")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_debezium_events_invalidate_and_a_poison_message_is_terminated() {
    let nats = Nats::start();
    let a = cache(&common::unique_ns("nats"));
    for (k, t) in [
        ("k1", "product:1"),
        ("p7", "table:public.products:7"),
        ("i9", "table:shop.items:sku-9"),
        ("c3", "category:3"),
    ] {
        a.set(k, v(), &tagged(&[t])).await.expect("set");
    }
    a.set("home", v(), &WriteOptions::default())
        .await
        .expect("set");
    let feed = NatsFeed::new(nats.url()).table(
        "shop.items",
        TableRule {
            key: Some(vec!["sku".into()]),
            templates: None,
        },
    );
    let l = EventListener::start_nats(a.clone(), feed)
        .await
        .expect("start");
    let url = nats.url();
    publish(
        &url,
        "stratacache.plain",
        r#"{"tags": ["product:1"], "keys": ["home"]}"#,
    )
    .await;
    until("the plain event", || async {
        a.get("k1").await.expect("get").is_none() && a.get("home").await.expect("get").is_none()
    })
    .await;
    // A poison message: terminated and counted; the next one still flows.
    publish(&url, "stratacache.bad", "{not json").await;
    let debezium = r#"{"op": "u", "before": {"id": 7}, "after": {"id": 7, "name": "x"},
        "source": {"schema": "public", "table": "products"}}"#;
    publish(&url, "stratacache.cdc", debezium).await;
    until("the bare Debezium event", || async {
        a.get("p7").await.expect("get").is_none()
    })
    .await;
    let wrapped = r#"{"schema": {"type": "struct"}, "payload": {"op": "d", "before": {"sku": "sku-9"},
        "after": null, "source": {"db": "shop", "table": "items"}}}"#;
    publish(&url, "stratacache.cdc", wrapped).await;
    until("the enveloped Debezium event", || async {
        a.get("i9").await.expect("get").is_none()
    })
    .await;
    // Counted just after the invalidation they count.
    until("all counted", || async { l.stats().messages == 3 }).await;
    let s = l.stats();
    assert_eq!(
        (s.messages, s.malformed, s.keys_deleted),
        (3, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.tags_invalidated, 1 + 2 + 2, "{s:?}");
    assert!(a.get("c3").await.expect("get").is_some(), "nothing else");
    l.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_survived_and_two_listeners_share_the_work() {
    let mut nats = Nats::start();
    let ns = common::unique_ns("nats-restart");
    let (a, b) = (cache(&ns), cache(&ns));
    let l1 = EventListener::start_nats(a.clone(), NatsFeed::new(nats.url()))
        .await
        .expect("start");
    let l2 = EventListener::start_nats(b.clone(), NatsFeed::new(nats.url()))
        .await
        .expect("start");
    let url = nats.url();
    for i in 0..20 {
        publish(&url, "stratacache.x", &format!(r#"{{"tags": ["t{i}"]}}"#)).await;
    }
    until("20 messages handled once in all", || async {
        l1.stats().messages + l2.stats().messages == 20
    })
    .await;

    // The server dies and comes back (its store kept): events published
    // after the restart still reach the caches.
    nats.kill();
    nats.spawn();
    a.set("after", v(), &tagged(&["restart"]))
        .await
        .expect("set");
    let t0 = Instant::now();
    publish(&url, "stratacache.x", r#"{"tags": ["restart"]}"#).await;
    until("the event after the restart", || async {
        a.get("after").await.expect("get").is_none()
    })
    .await;
    eprintln!(
        "first event after the restart handled in {:?}",
        t0.elapsed()
    );
    // At least once: a server killed before it persisted the consumer's
    // acknowledgements redelivers those messages (invalidated again,
    // harmlessly); nothing is lost.
    let (s1, s2) = (l1.stats(), l2.stats());
    eprintln!("after the restart: {s1:?} {s2:?}");
    assert_eq!(s1.malformed + s2.malformed, 0);
    l1.stop().await;
    l2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_configuration_error() {
    let a = cache(&common::unique_ns("nats-bad"));
    let e = EventListener::start_nats(a, NatsFeed::new("nats://127.0.0.1:1"))
        .await
        .expect_err("no server");
    assert_eq!(e.code(), "E_CONFIG");
    assert!(e.to_string().contains("cannot connect"), "{e}");
}
