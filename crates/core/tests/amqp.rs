//! Invalidation events from RabbitMQ against the machine's broker
//! (`STRATACACHE_AMQP_URL`, default guest on 127.0.0.1:5672) and a real
//! Redis: plain and Debezium events, a poison message dead-lettered, a
//! connection the broker closes, two listeners sharing the queue, a
//! refused login.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use stratacache::WriteOptions;
use stratacache::feed::EventListener;
use stratacache::feed::amqp::AmqpFeed;

fn amqp_url() -> String {
    std::env::var("STRATACACHE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

struct Broker {
    conn: Connection,
    ch: lapin::Channel,
    queue: String,
}

impl Broker {
    async fn new() -> Broker {
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ on 127.0.0.1:5672 (guest/guest)");
        let ch = conn.create_channel().await.expect("channel");
        Broker {
            conn,
            ch,
            queue: format!("sc-test-{}", common::rand_u64()),
        }
    }

    async fn publish(&self, body: &str) {
        self.ch
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// The bodies in the dead-letter queue.
    async fn dead(&self) -> Vec<String> {
        let mut out = Vec::new();
        let dead = format!("{}.dead", self.queue);
        while let Some(m) = self
            .ch
            .basic_get(dead.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
        }
        out
    }

    async fn drop(self) {
        for q in [self.queue.clone(), format!("{}.dead", self.queue)] {
            let _ = self
                .ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .ch
            .exchange_delete(
                format!("{}.dead", self.queue).as_str().into(),
                Default::default(),
            )
            .await;
        let _ = self.conn.close(200, "done".into()).await;
    }
}

use common::process_cache as cache;

fn tagged(tag: &str) -> WriteOptions {
    common::tagged_for_5m(&[tag])
}

use common::until;

fn v() -> Bytes {
    Bytes::from_static(b"v")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_invalidate_and_a_poison_message_is_dead_lettered() {
    let b = Broker::new().await;
    let a = cache(&common::unique_ns("amqp"));
    a.set("k1", v(), &tagged("product:1")).await.expect("set");
    a.set("p7", v(), &tagged("table:public.products:7"))
        .await
        .expect("set");
    a.set("home", v(), &WriteOptions::default())
        .await
        .expect("set");
    let l = EventListener::start_amqp(a.clone(), AmqpFeed::new(amqp_url()).queue(b.queue.clone()))
        .await
        .expect("start");
    b.publish(r#"{"tags": ["product:1"], "keys": ["home"]}"#)
        .await;
    b.publish("{poison").await;
    b.publish(
        r#"{"schema": {}, "payload": {"op": "c", "after": {"id": 7},
            "source": {"schema": "public", "table": "products"}}}"#,
    )
    .await;
    until("both events", || async {
        a.get("k1").await.expect("get").is_none()
            && a.get("home").await.expect("get").is_none()
            && a.get("p7").await.expect("get").is_none()
    })
    .await;
    // Counted just after the invalidation they count.
    until("all counted", || async {
        l.stats().malformed == 1 && l.stats().messages == 2
    })
    .await;
    let s = l.stats();
    assert_eq!(
        (s.messages, s.tags_invalidated, s.keys_deleted, s.errors),
        (2, 3, 1, 0),
        "{s:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let d = b.dead().await;
        if !d.is_empty() || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(dead, ["{poison"], "the poison message, dead-lettered");
    l.stop().await;
    b.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_is_made_again_and_two_listeners_share_the_queue() {
    let b = Broker::new().await;
    let ns = common::unique_ns("amqp-fleet");
    let (a, c) = (cache(&ns), cache(&ns));
    let feed = AmqpFeed::new(amqp_url()).queue(b.queue.clone());
    let l1 = EventListener::start_amqp(a.clone(), feed.clone())
        .await
        .expect("start");
    let l2 = EventListener::start_amqp(c.clone(), feed)
        .await
        .expect("start");
    for i in 0..20 {
        b.publish(&format!(r#"{{"tags": ["t{i}"]}}"#)).await;
    }
    until("20 messages handled once in all", || async {
        l1.stats().messages + l2.stats().messages == 20
    })
    .await;

    // The broker closes the listeners' connections (as on a broker
    // restart); they connect again and go on.
    let name = format!("stratacache event feed (queue {})", b.queue);
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl");
    let listing = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains(&name))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(pids.len(), 2, "{listing}");
    for pid in pids {
        let st = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "test: closed by the broker"])
            .status()
            .expect("rabbitmqctl");
        assert!(st.success());
    }
    // Each listener counts the closed connection, and each failed
    // reconnection attempt after it: at least one each, how many is the
    // broker's timing.
    until("both listeners saw the connection go", || async {
        l1.stats().errors >= 1 && l2.stats().errors >= 1
    })
    .await;
    a.set("after", v(), &tagged("restart")).await.expect("set");
    b.publish(r#"{"tags": ["restart"]}"#).await;
    until("the event after the reconnection", || async {
        a.get("after").await.expect("get").is_none()
    })
    .await;
    until("21 handled", || async {
        l1.stats().messages + l2.stats().messages == 21
    })
    .await;
    l1.stop().await;
    l2.stop().await;
    b.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_a_configuration_error() {
    let a = cache(&common::unique_ns("amqp-bad"));
    let e = EventListener::start_amqp(a, AmqpFeed::new("amqp://guest:wrong@127.0.0.1:5672/%2f"))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), "E_CONFIG");
    assert!(
        e.to_string()
            .contains("cannot connect (check the URL, the broker and the login)"),
        "{e}"
    );
}
