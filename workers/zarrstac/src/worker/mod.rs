//! `zarrstac worker`: a Kafka consumer-group member that runs the pipeline for each
//! message and acknowledges it only once its outputs are written or it is on the
//! dead-letter topic.
//!
//! Messages are spread over `concurrency` lanes by key, so messages of one key keep their
//! order while others run alongside; a partition's offset is stored only up to its
//! highest contiguous finished message ([`zarrstac_queue::OffsetTracker`]).

pub mod in_flight;
pub mod metrics;
pub mod replay;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio::sync::mpsc;
use zarrstac_pipeline::config::{PipelineConfig, WorkerConfig};
use zarrstac_pipeline::outcome::dead_letter_topic::{DeadLetterTopic, Letter};
use zarrstac_pipeline::{DatasetPublication, Failure, Outcome, Request, Runner, Stages, Staging};
use zarrstac_queue::kafka::{header, header_text};
use zarrstac_queue::{OffsetTracker, Parsed, parse_message};

use in_flight::{InFlightLog, Start};
use metrics::{Metrics, PartitionLabel};

/// A message taken from the topic, owned so it can cross to a lane.
struct Job {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

struct Done {
    topic: String,
    partition: i32,
    offset: i64,
}

/// Reports consumer lag per partition from librdkafka's statistics, and resets the
/// offset tracking of partitions that move to or from this consumer.
struct LagContext {
    metrics: Arc<Metrics>,
    tracker: Arc<parking_lot::Mutex<OffsetTracker>>,
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if part.partition < 0 || part.consumer_lag < 0 {
                    continue;
                }
                self.metrics
                    .lag
                    .get_or_create(&PartitionLabel {
                        topic: topic.clone(),
                        partition: p.to_string(),
                    })
                    .set(part.consumer_lag);
            }
        }
    }
}
impl ConsumerContext for LagContext {
    fn post_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::Rebalance;
        let moved = match rebalance {
            Rebalance::Assign(tpl) | Rebalance::Revoke(tpl) => tpl.elements(),
            Rebalance::Error(e) => {
                tracing::warn!("rebalance: {e}");
                return;
            }
        };
        // What was known of a partition before it moved is stale: its new owner starts
        // from the committed offset, and an old high-water mark must not let this
        // consumer store an offset past messages it has not finished.
        let mut tracker = self.tracker.lock();
        for e in moved {
            tracker.forget(e.topic(), e.partition());
        }
    }
}

/// Creates the topics when they are missing (a fresh broker).
pub async fn ensure_topics(config: &WorkerConfig, topics: &[&str]) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        config.kafka_client().create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, config.partitions.max(1), TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(
            &new,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .map_err(|e| anyhow::anyhow!("broker {}: creating topics: {e}", config.brokers))?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("broker {}: creating topic {t}: {e}", config.brokers),
        }
    }
    Ok(())
}

/// The partitions of `worker.assigned_partitions`, each from its committed offset, once the
/// topic is known to have them.
fn assignment<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    wc: &WorkerConfig,
) -> anyhow::Result<TopicPartitionList> {
    let metadata = consumer
        .fetch_metadata(Some(&wc.topic), Duration::from_secs(30))
        .map_err(|e| anyhow::anyhow!("broker {}: topic {}: {e}", wc.brokers, wc.topic))?;
    let count = metadata
        .topics()
        .iter()
        .find(|t| t.name() == wc.topic)
        .map_or(0, |t| t.partitions().len());
    check_assignment(&wc.topic, &wc.assigned_partitions, count)?;
    let mut assignment = TopicPartitionList::new();
    for &p in &wc.assigned_partitions {
        assignment.add_partition_offset(&wc.topic, p, Offset::Stored)?;
    }
    Ok(assignment)
}

/// Each partition named once, and one the topic has.
fn check_assignment(topic: &str, partitions: &[i32], count: usize) -> anyhow::Result<()> {
    for (i, &p) in partitions.iter().enumerate() {
        if !usize::try_from(p).is_ok_and(|p| p < count) {
            anyhow::bail!(
                "worker.assigned_partitions: topic {topic} has no partition {p} (it has {count})"
            );
        }
        if partitions[..i].contains(&p) {
            anyhow::bail!("worker.assigned_partitions: partition {p} is given twice");
        }
    }
    Ok(())
}

/// Runs the configured backfills on their cron schedules: each run is a `zarrstac
/// backfill` process with this worker's configuration, so it checkpoints and reports like
/// one started by hand.
fn schedule_backfills(
    config: &PipelineConfig,
    config_path: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    for entry in &config.worker.schedule {
        let cron: croner::Cron = entry
            .cron
            .parse()
            .map_err(|e| anyhow::anyhow!("worker.schedule: cron {:?}: {e}", entry.cron))?;
        let entry = entry.clone();
        let config_path = config_path.clone();
        tokio::spawn(async move {
            loop {
                let now = chrono::Utc::now();
                let Ok(next) = cron.find_next_occurrence(&now, false) else {
                    tracing::error!("worker.schedule: {:?} has no next time", entry.cron);
                    return;
                };
                let wait = (next - now).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
                let Ok(exe) = std::env::current_exe() else {
                    return;
                };
                let mut cmd = tokio::process::Command::new(exe);
                cmd.arg("backfill").arg(&entry.prefix);
                if let Some(g) = &entry.glob {
                    cmd.arg("--match").arg(g);
                }
                if let Some(c) = &config_path {
                    cmd.arg("--config").arg(c);
                }
                tracing::info!("scheduled backfill of {} ({})", entry.prefix, entry.cron);
                match cmd.status().await {
                    Ok(s) if s.success() => {}
                    Ok(s) => {
                        tracing::error!("scheduled backfill of {} ended with {s}", entry.prefix)
                    }
                    Err(e) => tracing::error!("scheduled backfill of {}: {e}", entry.prefix),
                }
            }
        });
    }
    Ok(())
}

/// Runs until SIGTERM/SIGINT.
pub async fn run(
    config: PipelineConfig,
    config_path: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    schedule_backfills(&config, config_path)?;
    let wc = config.worker.clone();
    let metrics = Metrics::new();
    let tracker = Arc::new(parking_lot::Mutex::new(OffsetTracker::default()));
    metrics::serve(&wc.metrics_addr, metrics.clone()).await?;
    ensure_topics(&wc, &[&wc.topic, &wc.dlq_topic]).await?;
    let mut consumer_config = wc.kafka_client();
    if let Some(id) = &wc.instance_id {
        consumer_config.set("group.instance.id", id);
    }
    let consumer: StreamConsumer<LagContext> = consumer_config
        .set("group.id", &wc.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("statistics.interval.ms", "5000")
        .create_with_context(LagContext {
            metrics: metrics.clone(),
            tracker: tracker.clone(),
        })
        .map_err(|e| anyhow::anyhow!("broker {}: {e}", wc.brokers))?;
    if wc.assigned_partitions.is_empty() {
        consumer.subscribe(&[&wc.topic])?;
    } else {
        let assignment = tokio::task::block_in_place(|| assignment(&consumer, &wc))?;
        consumer.assign(&assignment)?;
    }
    let producer: FutureProducer = wc.kafka_producer().create()?;
    let lanes_n = config.run.concurrency.max(1);
    let in_flight = Arc::new(in_flight_log(&config)?);
    let dead_letters = Arc::new(DeadLetters {
        topic: DeadLetterTopic::new(producer, &wc.dlq_topic, &config.run.retry),
        in_flight: in_flight.clone(),
    });
    let runner = Arc::new(Runner::new(Arc::new(Stages::new(config).await?)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut lanes = Vec::with_capacity(lanes_n);
    let mut lane_tasks = Vec::with_capacity(lanes_n);
    let waiting = Arc::new(tokio::sync::Semaphore::new(wc.max_waiting.max(1)));
    for _ in 0..lanes_n {
        let (tx, mut rx) = mpsc::channel::<Job>(2);
        lanes.push(tx);
        let (runner, dead_letters, metrics, done_tx) = (
            runner.clone(),
            dead_letters.clone(),
            metrics.clone(),
            done_tx.clone(),
        );
        let (waiting, in_flight) = (waiting.clone(), in_flight.clone());
        lane_tasks.push(tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                let started = Instant::now();
                // Bounds the messages waiting for a dataset rebuild.
                let Ok(permit) = waiting.clone().acquire_owned().await else {
                    return;
                };
                let done = Finish {
                    done_tx: done_tx.clone(),
                    metrics: metrics.clone(),
                    in_flight: in_flight.clone(),
                    started,
                };
                match in_flight.begin(&job.topic, job.partition, job.offset).await {
                    Start::Run { .. } => {}
                    Start::Crashed { crashes } => {
                        let failure = Failure::crashed(in_flight::crashed_message(crashes));
                        let attempts = earlier_attempts(&job) + crashes;
                        dead_letter(&dead_letters, letter(&job, &failure, attempts), &metrics)
                            .await;
                        metrics.crashed.inc();
                        done.finish(&job, true).await;
                        continue;
                    }
                    // Dead-lettered by a worker that stopped before its offset was
                    // committed: acknowledged, not dead-lettered twice.
                    Start::DeadLettered => {
                        tracing::info!(
                            "{}/{}@{}: already on the dead-letter topic",
                            job.topic,
                            job.partition,
                            job.offset
                        );
                        metrics.outcome("already_dead_lettered");
                        done.finish(&job, true).await;
                        continue;
                    }
                }
                match stage(&job, &runner, &dead_letters, &metrics).await {
                    MessageStage::Done(acknowledge) => done.finish(&job, acknowledge).await,
                    // A file of a dataset: its lane goes on with the next message while
                    // the rebuild holding this one (and those arriving meanwhile) runs.
                    MessageStage::Waiting(pending) => {
                        let (runner, dead_letters) = (runner.clone(), dead_letters.clone());
                        tokio::spawn(async move {
                            let acknowledge =
                                complete(&job, pending, &runner, &dead_letters, &done.metrics)
                                    .await;
                            done.finish(&job, acknowledge).await;
                            drop(permit);
                        });
                    }
                }
            }
        }));
    }
    drop(done_tx);
    let store = |consumer: &StreamConsumer<LagContext>, d: &Done, next: i64| {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&d.topic, d.partition, Offset::Offset(next))
            .is_ok()
            && let Err(e) = consumer.store_offsets(&tpl)
        {
            // The partition was revoked meanwhile: its new owner reads the message again.
            tracing::debug!("storing offset {next} of {}/{}: {e}", d.topic, d.partition);
        }
    };
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    let partitions = if wc.assigned_partitions.is_empty() {
        "partitions from the group".to_string()
    } else {
        format!("partitions {:?} assigned by hand", wc.assigned_partitions)
    };
    tracing::info!(
        "worker: group {} on {} at {} ({partitions}), {lanes_n} lanes, metrics on http://{}/metrics",
        wc.group_id,
        wc.topic,
        wc.brokers,
        wc.metrics_addr
    );
    loop {
        metrics.beat();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => refresh(&runner).await,
            Some(d) = done_rx.recv() => {
                if let Some(next) = tracker.lock().complete(&d.topic, d.partition, d.offset) {
                    store(&consumer, &d, next);
                }
            }
            msg = consumer.recv() => {
                let m = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("broker: {e}");
                        continue;
                    }
                };
                let job = Job {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    headers: m.headers().map(|h| h.detach()),
                };
                drop(m);
                tracker.lock().start(&job.topic, job.partition, job.offset);
                metrics.in_flight.inc();
                let lane = lane_of(job.key.as_deref(), job.partition, lanes_n);
                // Waits when the lane is full: fetching stops while work is behind.
                loop {
                    tokio::select! {
                        sent = lanes[lane].reserve() => {
                            match sent {
                                Ok(permit) => permit.send(job),
                                Err(_) => anyhow::bail!("a worker lane stopped"),
                            }
                            break;
                        }
                        Some(d) = done_rx.recv() => {
                            if let Some(next) = tracker.lock().complete(&d.topic, d.partition, d.offset) {
                                store(&consumer, &d, next);
                            }
                        }
                    }
                }
            }
        }
    }
    tracing::info!(
        "worker: stopping; {} message(s) in flight get {}s to finish",
        tracker.lock().in_flight(),
        wc.shutdown_grace_s
    );
    drop(lanes);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wc.shutdown_grace_s);
    let finish = async {
        while let Some(d) = done_rx.recv().await {
            if let Some(next) = tracker.lock().complete(&d.topic, d.partition, d.offset) {
                store(&consumer, &d, next);
            }
        }
    };
    if tokio::time::timeout_at(deadline, finish).await.is_err() {
        tracing::warn!("worker: unfinished messages are left to the next consumer");
        for t in &lane_tasks {
            t.abort();
        }
        in_flight.release_interrupted().await;
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .or_else(|e| match e {
            // Nothing stored since the last commit.
            rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            ) => Ok(()),
            e => Err(e),
        })
        .map_err(|e| anyhow::anyhow!("committing offsets: {e}"))?;
    refresh(&runner).await;
    drop(lane_tasks);
    if let Ok(runner) = Arc::try_unwrap(runner)
        && let Ok(stages) = Arc::try_unwrap(runner.into_stages())
    {
        stages.close().await;
    }
    tracing::info!("worker: stopped, offsets committed");
    Ok(())
}

fn lane_of(key: Option<&[u8]>, partition: i32, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    match key {
        Some(k) => k.hash(&mut h),
        None => partition.hash(&mut h),
    }
    (h.finish() % lanes as u64) as usize
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Refreshes the collections written meanwhile (extents, summaries; for a static catalog
/// also its links), at most every tick: once per message would re-read a whole static
/// collection each time.
async fn refresh(runner: &Runner) {
    if let Err(f) = runner.refresh().await {
        tracing::warn!("{}", f.message);
    }
}

/// Where a message stands after its requests' own stages.
enum MessageStage {
    /// Finished: acknowledge it (true), or leave it to the next consumer (false).
    Done(bool),
    /// Its files wait for their datasets' rebuilds.
    Waiting(Pending),
}

struct Pending {
    members: Vec<zarrstac_pipeline::Waiting>,
    changed: bool,
    earlier_attempts: u32,
}

/// The dead-letter topic, and the in-flight records that keep a redelivered message from
/// being dead-lettered twice.
struct DeadLetters {
    topic: DeadLetterTopic,
    in_flight: Arc<InFlightLog>,
}

/// Acknowledges a finished message and records its time.
struct Finish {
    done_tx: mpsc::UnboundedSender<Done>,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlightLog>,
    started: Instant,
}

impl Finish {
    async fn finish(self, job: &Job, acknowledge: bool) {
        if acknowledge {
            self.in_flight
                .end(&job.topic, job.partition, job.offset)
                .await;
            let _ = self.done_tx.send(Done {
                topic: job.topic.clone(),
                partition: job.partition,
                offset: job.offset,
            });
        }
        self.metrics
            .observe("message", self.started.elapsed().as_secs_f64());
        self.metrics.in_flight.dec();
    }
}

/// Where the worker records the messages it has started; see [`in_flight`].
fn in_flight_log(config: &PipelineConfig) -> anyhow::Result<InFlightLog> {
    let wc = &config.worker;
    let root = match &wc.in_flight {
        Some(root) => root.clone(),
        None => format!(
            "{}/.in-flight",
            config.output.refs_root.trim_end_matches('/')
        ),
    };
    let root = zarrstac_io::Location::parse(&root)
        .map_err(|e| anyhow::anyhow!("worker.in_flight: {e}"))?
        .join(&wc.group_id);
    let worker = wc.instance_id.clone().unwrap_or_else(|| {
        format!(
            "{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            std::process::id()
        )
    });
    Ok(InFlightLog::new(
        root,
        wc.max_crashes,
        config.run.retry.clone(),
        worker,
    ))
}

/// Deliveries of the message before this one, as its headers count them (a replayed
/// dead letter carries its attempts).
fn earlier_attempts(job: &Job) -> u32 {
    let headers = job.headers.as_ref().map(|h| h.as_borrowed());
    header_text(headers, header::ATTEMPTS)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

fn letter<'a>(job: &'a Job, failure: &'a Failure, attempts: u32) -> Letter<'a> {
    let headers = job.headers.as_ref().map(|h| h.as_borrowed());
    Letter {
        origin_topic: &job.topic,
        partition: job.partition,
        offset: job.offset,
        key: job.key.as_deref(),
        payload: job.payload.as_deref(),
        headers,
        failure,
        attempts,
        first_failure: header_text(headers, header::FIRST_FAILURE),
    }
}

/// Parses a message and runs its requests' own stages; a failure goes to the dead-letter
/// topic at once.
async fn stage(
    job: &Job,
    runner: &Runner,
    dead_letters: &DeadLetters,
    metrics: &Metrics,
) -> MessageStage {
    let headers: Vec<(&str, &[u8])> = job
        .headers
        .as_ref()
        .map(|h| {
            h.iter()
                .filter_map(|h| h.value.map(|v| (h.key, v)))
                .collect()
        })
        .unwrap_or_default();
    let earlier_attempts = earlier_attempts(job);
    let t = Instant::now();
    let parsed = parse_message(job.payload.as_deref(), &headers);
    metrics.observe("parse", t.elapsed().as_secs_f64());
    let requests = match parsed {
        Ok(Parsed::Requests(r)) => r,
        Ok(Parsed::Ignored(reason)) => {
            tracing::info!(
                "{}/{}@{}: ignored: {reason}",
                job.topic,
                job.partition,
                job.offset
            );
            metrics.outcome("ignored");
            return MessageStage::Done(true);
        }
        Err(e) => {
            let failure = Failure::permanent(format!("malformed message: {e}"));
            dead_letter(
                dead_letters,
                letter(job, &failure, earlier_attempts + 1),
                metrics,
            )
            .await;
            return MessageStage::Done(true);
        }
    };
    let mut pending = Pending {
        members: Vec::new(),
        changed: false,
        earlier_attempts,
    };
    for request in requests {
        let t = Instant::now();
        let staged = runner
            .stage(&Request {
                source: request.url.clone(),
                collection: request.collection.clone(),
                publication: DatasetPublication {
                    pid: request.dataset_pid.clone(),
                    retracted: request.retracted,
                },
            })
            .await;
        metrics.observe("ingest", t.elapsed().as_secs_f64());
        match staged {
            Staging::Member(waiting) => pending.members.push(*waiting),
            Staging::Finished(finished) => {
                if dead_lettered(job, &finished, &pending, dead_letters, metrics).await {
                    return MessageStage::Done(true);
                }
                pending.changed |= finished.outcome == Outcome::Ingested;
            }
        }
    }
    if pending.members.is_empty() {
        metrics.outcome(if pending.changed {
            "ingested"
        } else {
            "unchanged"
        });
        return MessageStage::Done(true);
    }
    MessageStage::Waiting(pending)
}

/// Counts a finished request's retries; a failed one is dead-lettered (true: the
/// message is done with).
async fn dead_lettered(
    job: &Job,
    finished: &zarrstac_pipeline::Finished,
    pending: &Pending,
    dead_letters: &DeadLetters,
    metrics: &Metrics,
) -> bool {
    for _ in 1..finished.attempts {
        metrics.retries.inc();
    }
    if let Outcome::Failed(f) = &finished.outcome {
        tracing::error!("{}: {}", finished.source, f.message);
        let attempts = pending.earlier_attempts + finished.attempts;
        dead_letter(dead_letters, letter(job, f, attempts), metrics).await;
        return true;
    }
    false
}

/// Waits for the rebuilds holding a message's files; acknowledges the message once every
/// one of them has written its dataset's item (or the message is dead-lettered).
async fn complete(
    job: &Job,
    mut pending: Pending,
    runner: &Runner,
    dead_letters: &DeadLetters,
    metrics: &Metrics,
) -> bool {
    for waiting in std::mem::take(&mut pending.members) {
        let t = Instant::now();
        let finished = runner.complete(waiting).await;
        metrics.observe("dataset", t.elapsed().as_secs_f64());
        if dead_lettered(job, &finished, &pending, dead_letters, metrics).await {
            return true;
        }
        pending.changed |= finished.outcome == Outcome::Ingested;
    }
    metrics.outcome(if pending.changed {
        "ingested"
    } else {
        "unchanged"
    });
    true
}

/// Puts a message on the dead-letter topic (retrying until the broker takes it: a lane
/// stuck here holds its offset back, and on shutdown the message is left unacknowledged
/// for the next consumer).
async fn dead_letter(dead_letters: &DeadLetters, letter: Letter<'_>, metrics: &Metrics) {
    let (topic, partition, offset) = (letter.origin_topic, letter.partition, letter.offset);
    let took = dead_letters.topic.send(letter).await;
    // Before the offset is committed: a redelivery finds the mark and is not sent again.
    dead_letters
        .in_flight
        .mark_dead_lettered(topic, partition, offset)
        .await;
    metrics.dead_lettered.inc();
    metrics.outcome("dead_lettered");
    metrics.observe("dlq", took.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_assigned_by_hand_must_exist_and_be_named_once() {
        assert!(check_assignment("t", &[0, 3, 5], 6).is_ok());
        let missing = check_assignment("t", &[0, 6], 6).unwrap_err().to_string();
        assert!(
            missing.contains("topic t has no partition 6 (it has 6)"),
            "{missing}"
        );
        let negative = check_assignment("t", &[-1], 6).unwrap_err().to_string();
        assert!(negative.contains("no partition -1"), "{negative}");
        let twice = check_assignment("t", &[2, 4, 2], 6)
            .unwrap_err()
            .to_string();
        assert!(twice.contains("partition 2 is given twice"), "{twice}");
    }
}
