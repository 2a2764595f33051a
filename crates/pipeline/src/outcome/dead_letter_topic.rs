//! The Kafka dead-letter topic: a message that failed for good, with why, how often and
//! where it came from in its headers, and its key and payload unchanged.

use std::time::{Duration, Instant};

use rdkafka::message::BorrowedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use zarrstac_io::{RetryPolicy, Retryable};
use zarrstac_queue::kafka::DlqInfo;

use crate::failure::Failure;

/// A message on its way to the dead-letter topic.
pub struct Letter<'a> {
    pub origin_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Option<&'a BorrowedHeaders>,
    pub failure: &'a Failure,
    /// Attempts made, earlier deliveries included.
    pub attempts: u32,
    /// When it first failed (kept from an earlier delivery's headers).
    pub first_failure: Option<String>,
}

pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
    retry: RetryPolicy,
}

struct BrokerTrouble(String);

impl std::fmt::Display for BrokerTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Retryable for BrokerTrouble {
    fn is_transient(&self) -> bool {
        true
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl DeadLetterTopic {
    /// Sends with `retry`'s backoff, but never gives up: a message is only acknowledged
    /// once it is on the dead-letter topic.
    pub fn new(producer: FutureProducer, topic: &str, retry: &RetryPolicy) -> Self {
        DeadLetterTopic {
            producer,
            topic: topic.to_string(),
            retry: RetryPolicy {
                attempts: u32::MAX,
                ..retry.clone()
            },
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes the letter, retrying until the broker takes it; returns the time it took.
    pub async fn send(&self, letter: Letter<'_>) -> Duration {
        let now = now();
        let info = DlqInfo {
            error_class: letter.failure.class.as_str().into(),
            error: letter.failure.message.clone(),
            attempts: letter.attempts,
            origin_topic: letter.origin_topic.to_string(),
            origin_partition: letter.partition,
            origin_offset: letter.offset,
            first_failure: letter.first_failure.clone().unwrap_or_else(|| now.clone()),
            last_failure: now,
        };
        let started = Instant::now();
        let what = format!("writing to the dead-letter topic {}", self.topic);
        let sent = self
            .retry
            .run(&what, |_| {
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&self.topic).headers(info.headers(letter.headers));
                if let Some(k) = letter.key {
                    record = record.key(k);
                }
                if let Some(p) = letter.payload {
                    record = record.payload(p);
                }
                async move {
                    self.producer
                        .send(record, Duration::from_secs(30))
                        .await
                        .map(|_| ())
                        .map_err(|(e, _)| BrokerTrouble(e.to_string()))
                }
            })
            .await;
        if sent.is_ok() {
            tracing::warn!(
                "{}/{}@{} dead-lettered ({}, {} attempts): {}",
                letter.origin_topic,
                letter.partition,
                letter.offset,
                info.error_class,
                info.attempts,
                info.error
            );
        }
        started.elapsed()
    }
}
