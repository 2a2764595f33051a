//! Replay of the dead-letter topic: the selected records go back to the ingest topic with
//! their attempt count; the others are appended to the dead-letter topic again, so that
//! what the replay group has read past is never lost to a later replay.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use zarrstac_queue::kafka::{DlqInfo, replay_headers};

use zarrstac_pipeline::config::WorkerConfig;
use zarrstac_pipeline::outcome::failed_log::ReplayFilter;

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replayed {
    pub moved: u64,
    pub kept: u64,
    /// Records before the end the broker did not serve within [`BROKER_SILENCE`]: left
    /// for the next replay.
    pub unread: u64,
}

/// How long a replay waits for a broker that serves nothing before it stops: long enough
/// for a slow broker (tansu took tens of seconds to serve a fetch from the start of a
/// large partition), short enough for a log whose watermarks count records it never
/// serves (compacted, transactional).
pub const BROKER_SILENCE: Duration = Duration::from_secs(120);

/// How long a partition read to the end the broker reported must stay quiet before the
/// replay takes it as read: tansu 0.6 on an S3 store reports ends short of its records
/// (600 records in a topic, ends summing to 559), and the records past them are served.
pub const PAST_END_QUIET: Duration = Duration::from_secs(3);

pub async fn replay_dlq(
    wc: &WorkerConfig,
    filter: &ReplayFilter,
    limit: Option<usize>,
    dry_run: bool,
) -> anyhow::Result<Replayed> {
    super::ensure_topics(wc, &[&wc.topic, &wc.dlq_topic]).await?;
    let group = format!("{}-replay", wc.group_id);
    let consumer: BaseConsumer = wc
        .kafka_client()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(&wc.dlq_topic), timeout)
        .map_err(|e| anyhow::anyhow!("broker {}: {e}", wc.brokers))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // Read up to where the topic ends now: records appended below are not read again.
    let mut ends = Vec::new();
    let mut assignment = TopicPartitionList::new();
    for &p in &partitions {
        let (_, high) = consumer.fetch_watermarks(&wc.dlq_topic, p, timeout)?;
        ends.push((p, high));
        assignment.add_partition(&wc.dlq_topic, p);
    }
    let committed = consumer.committed_offsets(assignment.clone(), timeout)?;
    let mut start = TopicPartitionList::new();
    for &p in &partitions {
        let offset = committed
            .find_partition(&wc.dlq_topic, p)
            .map(|e| e.offset())
            .filter(|o| matches!(o, Offset::Offset(_)))
            .unwrap_or(Offset::Beginning);
        start.add_partition_offset(&wc.dlq_topic, p, offset)?;
    }
    consumer.assign(&start)?;
    let producer: FutureProducer = wc.kafka_producer().create()?;
    let mut positions: std::collections::HashMap<i32, i64> = Default::default();
    // Every record made before the replay began is read: up to the ends the broker
    // reported, then on while it serves more. A record made since (a kept record this
    // replay appended again, a new dead letter) ends its partition, unread.
    let began_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut finished: std::collections::HashSet<i32> = Default::default();
    let position = |positions: &std::collections::HashMap<i32, i64>, p: i32| {
        positions.get(&p).copied().unwrap_or_else(|| {
            match start.find_partition(&wc.dlq_topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            }
        })
    };
    // Records between where each partition's reading stands and the end reported for it.
    let remaining = |positions: &std::collections::HashMap<i32, i64>| -> u64 {
        ends.iter()
            .map(|(p, high)| (high - position(positions, *p)).max(0) as u64)
            .sum()
    };
    let mut done = Replayed::default();
    let mut last_record = std::time::Instant::now();
    while finished.len() < ends.len() {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            let quiet = last_record.elapsed();
            if quiet > PAST_END_QUIET {
                for (p, high) in &ends {
                    if position(&positions, *p) >= *high {
                        finished.insert(*p);
                    }
                }
            }
            if quiet > BROKER_SILENCE {
                done.unread = remaining(&positions);
                break;
            }
            continue;
        };
        let msg = msg.map_err(|e| anyhow::anyhow!("reading {}: {e}", wc.dlq_topic))?;
        if finished.contains(&msg.partition()) {
            continue;
        }
        last_record = std::time::Instant::now();
        if msg.timestamp().to_millis().is_some_and(|t| t >= began_ms) {
            finished.insert(msg.partition());
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&wc.dlq_topic, msg.partition());
            // Fetching it further would only bring what is to be left.
            let _ = consumer.pause(&tpl);
            continue;
        }
        positions.insert(msg.partition(), msg.offset() + 1);
        let headers = msg.headers();
        let info = DlqInfo::from_headers(headers);
        let key = msg.key().map(|k| String::from_utf8_lossy(k).into_owned());
        let chosen = info.as_ref().is_some_and(|i| {
            let record = zarrstac_pipeline::outcome::failed_log::FailedRecord {
                source: key.clone().unwrap_or_default(),
                error_class: i.error_class.clone(),
                message: i.error.clone(),
                time: i.last_failure.clone(),
                attempt: i.attempts,
            };
            record.selected(filter)
        }) && limit.is_none_or(|l| (done.moved as usize) < l);
        if dry_run {
            if chosen && let Some(i) = &info {
                println!(
                    "{}\t{}\tattempt {}\t{}",
                    key.as_deref().unwrap_or("-"),
                    i.error_class,
                    i.attempts,
                    i.error
                );
            }
            if chosen {
                done.moved += 1
            } else {
                done.kept += 1
            }
            continue;
        }
        let (to, out_headers) = match (&info, chosen) {
            (Some(i), true) => (&wc.topic, replay_headers(headers, i)),
            _ => (
                &wc.dlq_topic,
                msg.headers()
                    .map(rdkafka::message::BorrowedHeaders::detach)
                    .unwrap_or_default(),
            ),
        };
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(to).headers(out_headers);
        if let Some(k) = msg.key() {
            record = record.key(k);
        }
        if let Some(p) = msg.payload() {
            record = record.payload(p);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("re-enqueueing: {e}"))?;
        if chosen {
            done.moved += 1
        } else {
            done.kept += 1
        }
    }
    if !dry_run {
        let mut tpl = TopicPartitionList::new();
        for (p, pos) in &positions {
            tpl.add_partition_offset(&wc.dlq_topic, *p, Offset::Offset(*pos))?;
        }
        if tpl.count() > 0 {
            consumer.commit(&tpl, CommitMode::Sync)?;
        }
    }
    Ok(done)
}
