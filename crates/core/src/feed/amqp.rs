//! Invalidation events from RabbitMQ (AMQP 0.9.1): a durable queue
//! (declared when absent, optionally bound to an exchange) whose messages
//! are [`super::events`] (plain or Debezium). Every listener of the fleet
//! consumes the same queue, so each message is handled once.
//!
//! - **At least once**: a message is acknowledged only after its tags and
//!   keys reached Redis; when that fails it is requeued (after a backoff)
//!   and the failure counted.
//! - **Poison messages**: a message that is not a valid event is logged,
//!   counted and rejected without requeue, which sends it to the queue's
//!   dead-letter exchange (`<queue>.dead`, a fanout with a queue of the
//!   same name, declared with the queue); it never blocks the queue.
//! - **Restarts**: a lost connection (broker restart, a closed
//!   connection) is made again after a backoff, and consumption resumes;
//!   unacknowledged messages are redelivered by the broker.

use std::collections::HashMap;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};

use super::consume::{Ctx, EventListener, Outcome};
use super::events::TableRule;
use crate::Cache;
use crate::error::{Error, Result};

/// What to consume, and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AmqpFeed {
    /// The broker (`amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub url: String,
    /// The queue every listener consumes (durable, declared when absent,
    /// with a dead-letter exchange `<queue>.dead`). Default `stratacache`.
    pub queue: String,
    /// Bind the queue to this exchange with this routing key (the exchange
    /// must exist: Debezium Server's RabbitMQ sink publishes to one).
    pub bind: Option<(String, String)>,
    /// Unacknowledged messages in flight per listener. Default 100.
    pub prefetch: u16,
    /// Per-table key columns and templates for Debezium events, by
    /// `schema.table` (a bare name is in `public`).
    pub tables: HashMap<String, TableRule>,
}

impl AmqpFeed {
    /// A feed of `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        AmqpFeed {
            url: url.into(),
            queue: "stratacache".into(),
            bind: None,
            prefetch: 100,
            tables: HashMap::new(),
        }
    }

    /// A feed from options a binding may leave unset (`None`: the
    /// default).
    pub fn from_options(
        url: impl Into<String>,
        queue: Option<String>,
        bind: Option<(String, String)>,
        tables: Vec<(String, TableRule)>,
    ) -> Self {
        let d = AmqpFeed::new(url);
        AmqpFeed {
            queue: queue.unwrap_or(d.queue),
            bind,
            tables: tables
                .into_iter()
                .map(|(t, r)| (super::qualified(&t), r))
                .collect(),
            ..d
        }
    }

    /// See [`AmqpFeed::queue`].
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// See [`AmqpFeed::bind`].
    pub fn bind(mut self, exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        self.bind = Some((exchange.into(), routing_key.into()));
        self
    }

    /// Key columns and templates of `table`'s Debezium events.
    pub fn table(mut self, table: impl Into<String>, rule: TableRule) -> Self {
        self.tables.insert(super::qualified(&table.into()), rule);
        self
    }
}

fn amqp_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("RabbitMQ event feed: {what}: {e}"))
}

impl EventListener {
    /// Connect to RabbitMQ, declare the queue (and its dead-letter
    /// exchange and queue), bind it when asked, and consume in the
    /// background on the core's runtime.
    pub async fn start_amqp(cache: Cache, feed: AmqpFeed) -> Result<EventListener> {
        if feed.queue.is_empty() || feed.prefetch == 0 {
            return Err(Error::Config(
                "RabbitMQ event feed: the queue must be named and prefetch > 0".into(),
            ));
        }
        let f = feed.clone();
        let first = crate::runtime::runtime()
            .spawn(async move { open(&f).await })
            .await
            .map_err(|e| amqp_err("start", e))??;
        let tables = feed.tables.clone();
        Ok(EventListener::spawn(cache, tables, move |ctx| {
            run(ctx, feed, first)
        }))
    }
}

/// A connection and a consumer of the feed's queue.
async fn open(feed: &AmqpFeed) -> Result<(Connection, lapin::Consumer)> {
    let conn = Connection::connect(
        &feed.url,
        ConnectionProperties::default()
            .with_connection_name(format!("stratacache event feed (queue {})", feed.queue).into()),
    )
    .await
    .map_err(|e| {
        amqp_err(
            "cannot connect (check the URL, the broker and the login)",
            e,
        )
    })?;
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| amqp_err("opening a channel", e))?;
    let dead = format!("{}.dead", feed.queue);
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        dead.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp_err(&format!("declaring exchange {dead:?}"), e))?;
    ch.queue_declare(dead.as_str().into(), durable, FieldTable::default())
        .await
        .map_err(|e| amqp_err(&format!("declaring queue {dead:?}"), e))?;
    ch.queue_bind(
        dead.as_str().into(),
        dead.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| amqp_err(&format!("binding {dead:?}"), e))?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead.as_str().into()),
    );
    ch.queue_declare(feed.queue.as_str().into(), durable, args)
        .await
        .map_err(|e| {
            amqp_err(
                &format!(
                    "declaring queue {:?} (an existing queue must be durable with \
                     x-dead-letter-exchange {dead:?})",
                    feed.queue
                ),
                e,
            )
        })?;
    if let Some((exchange, key)) = &feed.bind {
        ch.queue_bind(
            feed.queue.as_str().into(),
            exchange.as_str().into(),
            key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp_err(&format!("binding to exchange {exchange:?}"), e))?;
    }
    ch.basic_qos(feed.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| amqp_err("setting prefetch", e))?;
    let consumer = ch
        .basic_consume(
            feed.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| amqp_err(&format!("consuming {:?}", feed.queue), e))?;
    Ok((conn, consumer))
}

async fn run(mut ctx: Ctx, feed: AmqpFeed, first: (Connection, lapin::Consumer)) {
    let mut current = Some(first);
    while !ctx.stopping() {
        let (conn, mut consumer) = match current.take() {
            Some(c) => c,
            None => match open(&feed).await {
                Ok(c) => c,
                Err(e) => {
                    ctx.failed(&e.to_string());
                    if ctx.pause().await {
                        return;
                    }
                    continue;
                }
            },
        };
        loop {
            let next = tokio::select! {
                d = consumer.next() => d,
                _ = ctx.stopped.changed() => {
                    let _ = conn.close(200, "stopped".into()).await;
                    return;
                }
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    ctx.failed(&format!("consume: {e}"));
                    break;
                }
                None => {
                    ctx.failed("the consumer was cancelled");
                    break;
                }
            };
            let r = match ctx
                .handle(&delivery.data, &format!("queue {:?}", feed.queue))
                .await
            {
                Outcome::Done => delivery.ack(BasicAckOptions::default()).await,
                Outcome::Malformed => delivery.reject(BasicRejectOptions { requeue: false }).await,
                Outcome::Retry => {
                    let stop = ctx.pause().await;
                    let r = delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await;
                    if stop {
                        let _ = conn.close(200, "stopped".into()).await;
                        return;
                    }
                    r
                }
            };
            if let Err(e) = r {
                // Not acknowledged: redelivered by the broker.
                ctx.failed(&format!("ack: {e}"));
                break;
            }
        }
        let _ = conn.close(200, "reconnecting".into()).await;
        if ctx.pause().await {
            return;
        }
    }
}
