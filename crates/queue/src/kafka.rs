//! The Kafka side: client settings and dead-letter records (the original message with
//! why, how often and where it failed, in headers).

use rdkafka::ClientConfig;
use rdkafka::message::{Header, Headers, OwnedHeaders};

/// Header names of dead-letter records (and of replayed messages, which keep them).
pub mod header {
    pub const ERROR_CLASS: &str = "zarrstac-error-class";
    pub const ERROR: &str = "zarrstac-error";
    pub const ATTEMPTS: &str = "zarrstac-attempts";
    pub const ORIGIN_TOPIC: &str = "zarrstac-origin-topic";
    pub const ORIGIN_PARTITION: &str = "zarrstac-origin-partition";
    pub const ORIGIN_OFFSET: &str = "zarrstac-origin-offset";
    pub const FIRST_FAILURE: &str = "zarrstac-first-failure";
    pub const LAST_FAILURE: &str = "zarrstac-last-failure";
}

/// Settings every client of ours shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", concat!("zarrstac/", env!("CARGO_PKG_VERSION")));
    c
}

/// `client` made a producer of ours (dead letters, replay, backfill).
/// `single_record_batches` sends every record in a batch of its own: a broker that cannot
/// serve a fetch starting inside a batch (tansu 0.6, deploy/README.md) then still serves a
/// consumer that resumes at any offset.
pub fn producer_config(mut client: ClientConfig, single_record_batches: bool) -> ClientConfig {
    client.set("message.timeout.ms", "60000");
    if single_record_batches {
        client.set("batch.num.messages", "1").set("linger.ms", "0");
    }
    client
}

/// Why a message is on the dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqInfo {
    pub error_class: String,
    pub error: String,
    /// Attempts made in all, including those of earlier runs (replays).
    pub attempts: u32,
    pub origin_topic: String,
    pub origin_partition: i32,
    pub origin_offset: i64,
    /// RFC 3339.
    pub first_failure: String,
    pub last_failure: String,
}

/// A header's value as text.
pub fn header_text(
    headers: Option<&rdkafka::message::BorrowedHeaders>,
    name: &str,
) -> Option<String> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl DlqInfo {
    /// Headers of the dead-letter record: the original headers (minus ours), then ours.
    pub fn headers(&self, original: Option<&rdkafka::message::BorrowedHeaders>) -> OwnedHeaders {
        let mut out = foreign_headers(original);
        let attempts = self.attempts.to_string();
        let partition = self.origin_partition.to_string();
        let offset = self.origin_offset.to_string();
        for (key, value) in [
            (header::ERROR_CLASS, self.error_class.as_str()),
            (header::ERROR, self.error.as_str()),
            (header::ATTEMPTS, attempts.as_str()),
            (header::ORIGIN_TOPIC, self.origin_topic.as_str()),
            (header::ORIGIN_PARTITION, partition.as_str()),
            (header::ORIGIN_OFFSET, offset.as_str()),
            (header::FIRST_FAILURE, self.first_failure.as_str()),
            (header::LAST_FAILURE, self.last_failure.as_str()),
        ] {
            out = out.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        out
    }

    /// Reads the record's headers back (replay); `None` when they are not ours.
    pub fn from_headers(headers: Option<&rdkafka::message::BorrowedHeaders>) -> Option<Self> {
        let get = |n| header_text(headers, n);
        Some(DlqInfo {
            error_class: get(header::ERROR_CLASS)?,
            error: get(header::ERROR).unwrap_or_default(),
            attempts: get(header::ATTEMPTS)?.parse().ok()?,
            origin_topic: get(header::ORIGIN_TOPIC).unwrap_or_default(),
            origin_partition: get(header::ORIGIN_PARTITION)
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1),
            origin_offset: get(header::ORIGIN_OFFSET)
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1),
            first_failure: get(header::FIRST_FAILURE).unwrap_or_default(),
            last_failure: get(header::LAST_FAILURE).unwrap_or_default(),
        })
    }
}

/// A message's own headers, without ours (those are written anew).
fn foreign_headers(original: Option<&rdkafka::message::BorrowedHeaders>) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    for h in original
        .into_iter()
        .flat_map(|h| h.iter())
        .filter(|h| !h.key.starts_with("zarrstac-"))
    {
        out = out.insert(Header {
            key: h.key,
            value: h.value,
        });
    }
    out
}

/// Headers of a message moved back from the dead-letter topic: the original headers plus
/// the attempt count and first failure time, so a later failure keeps counting.
pub fn replay_headers(
    original: Option<&rdkafka::message::BorrowedHeaders>,
    info: &DlqInfo,
) -> OwnedHeaders {
    let out = foreign_headers(original);
    let attempts = info.attempts.to_string();
    out.insert(Header {
        key: header::ATTEMPTS,
        value: Some(attempts.as_bytes()),
    })
    .insert(Header {
        key: header::FIRST_FAILURE,
        value: Some(info.first_failure.as_bytes()),
    })
}
