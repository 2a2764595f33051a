//! A durable record of the messages workers have started and not finished, so that a
//! message that kills its worker (an abort, an out-of-memory kill) is dead-lettered
//! instead of taking down every worker that picks it up next.
//!
//! Kafka keeps no delivery count, so the worker keeps one, as SQS's `maxReceiveCount`
//! does: before processing a message it writes `<root>/<topic>/<partition>/<offset>.json`
//! with the number of times it was started, and it deletes the record once the message is
//! acknowledged (written, dead-lettered or skipped). A record that is still there when the
//! message arrives again means the worker that had it stopped without finishing it. The
//! root is an object-store location every worker of the group reaches (by default beside
//! the references), so a message counts its crashes whichever worker took it.
//!
//! A dead-lettered message keeps its record, marked, because the offset is committed a
//! moment after the letter is sent: a worker stopping in between would otherwise leave
//! the message to be dead-lettered again by the next one. The marks are small and few
//! (one per dead letter); any of them may be deleted once its partition's committed
//! offset is past it.

use std::collections::HashSet;

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use zarrstac_io::{IoError, Location, RetryPolicy};

/// What to do with a message about to be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Process it; `crashes` earlier deliveries were started and never finished.
    Run { crashes: u32 },
    /// It was started `crashes` times and never finished: dead-letter it.
    Crashed { crashes: u32 },
    /// It is on the dead-letter topic already: acknowledge it.
    DeadLettered,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    topic: String,
    partition: i32,
    offset: i64,
    /// Deliveries started (this one included) without being finished.
    starts: u32,
    last_start: String,
    worker: String,
    /// Sent to the dead-letter topic.
    #[serde(default)]
    dead_lettered: bool,
}

pub struct InFlightLog {
    root: Location,
    max_crashes: u32,
    retry: RetryPolicy,
    worker: String,
    /// Records this process wrote and has not removed: on a shutdown that interrupts
    /// them they are removed, since the worker did not crash.
    open: parking_lot::Mutex<HashSet<String>>,
}

impl InFlightLog {
    /// `max_crashes` 0: no records are kept and every message runs.
    pub fn new(root: Location, max_crashes: u32, retry: RetryPolicy, worker: String) -> Self {
        InFlightLog {
            root,
            max_crashes,
            retry,
            worker,
            open: Default::default(),
        }
    }

    fn name(topic: &str, partition: i32, offset: i64) -> String {
        format!("{topic}/{partition}/{offset}.json")
    }

    /// Records that the message is being processed, unless it already crashed its
    /// workers `max_crashes` times. A store that cannot be reached (after retries) does
    /// not hold the message back: it runs unguarded, with a warning.
    pub async fn begin(&self, topic: &str, partition: i32, offset: i64) -> Start {
        if self.max_crashes == 0 {
            return Start::Run { crashes: 0 };
        }
        let name = Self::name(topic, partition, offset);
        let location = self.root.join(&name);
        let what = format!("recording {} as in flight", location.url);
        let recorded = self
            .retry
            .run(&what, |_| async {
                let (crashes, dead_lettered) = read_record(&location).await?;
                if dead_lettered {
                    return Ok(Start::DeadLettered);
                }
                if crashes >= self.max_crashes {
                    return Ok(Start::Crashed { crashes });
                }
                self.write(&location, topic, partition, offset, crashes + 1, false)
                    .await?;
                Ok::<_, IoError>(Start::Run { crashes })
            })
            .await;
        match recorded {
            Ok((start, _)) => {
                if matches!(start, Start::Run { .. }) {
                    self.open.lock().insert(name);
                }
                start
            }
            Err((e, _)) => {
                tracing::warn!("{what}: {e}; the message runs without the crash guard");
                Start::Run { crashes: 0 }
            }
        }
    }

    async fn write(
        &self,
        location: &Location,
        topic: &str,
        partition: i32,
        offset: i64,
        starts: u32,
        dead_lettered: bool,
    ) -> Result<(), IoError> {
        let record = Record {
            topic: topic.to_string(),
            partition,
            offset,
            starts,
            last_start: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            worker: self.worker.clone(),
            dead_lettered,
        };
        let bytes = serde_json::to_vec(&record).expect("a record serializes");
        location
            .store
            .put(&location.path, PutPayload::from(bytes))
            .await
            .map_err(|source| IoError::Store {
                url: location.url.clone(),
                source,
            })?;
        Ok(())
    }

    /// Marks the message as sent to the dead-letter topic; its record stays.
    pub async fn mark_dead_lettered(&self, topic: &str, partition: i32, offset: i64) {
        if self.max_crashes == 0 {
            return;
        }
        let name = Self::name(topic, partition, offset);
        let location = self.root.join(&name);
        let what = format!("marking {} as dead-lettered", location.url);
        let marked = self
            .retry
            .run(&what, |_| {
                self.write(&location, topic, partition, offset, 0, true)
            })
            .await;
        if let Err((e, _)) = marked {
            tracing::warn!("{what}: {e}; a redelivery would be dead-lettered again");
        }
        self.open.lock().remove(&name);
    }

    /// Removes the message's record: it is acknowledged. A dead-lettered message keeps
    /// its mark.
    pub async fn end(&self, topic: &str, partition: i32, offset: i64) {
        let name = Self::name(topic, partition, offset);
        if self.open.lock().contains(&name) {
            self.remove(&name).await;
        }
    }

    /// Removes the records of messages this process started and is abandoning on
    /// shutdown: they were interrupted, not crashed on.
    pub async fn release_interrupted(&self) {
        let names: Vec<String> = self.open.lock().iter().cloned().collect();
        for name in names {
            self.remove(&name).await;
        }
    }

    async fn remove(&self, name: &str) {
        let location = self.root.join(name);
        match location.store.delete(&location.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            // A record left behind counts one crash against a message already finished:
            // harmless unless the message is delivered again.
            Err(e) => tracing::warn!("removing {}: {e}", location.url),
        }
        self.open.lock().remove(name);
    }
}

/// The starts a stored record counts (0 without a record) and whether the message was
/// dead-lettered. A record that cannot be decoded counts as one start: something was
/// writing it.
async fn read_record(location: &Location) -> Result<(u32, bool), IoError> {
    let err = |source| IoError::Store {
        url: location.url.clone(),
        source,
    };
    let bytes = match location.store.get(&location.path).await {
        Ok(got) => got.bytes().await.map_err(err)?,
        Err(object_store::Error::NotFound { .. }) => return Ok((0, false)),
        Err(e) => return Err(err(e)),
    };
    Ok(match serde_json::from_slice::<Record>(&bytes) {
        Ok(r) => (r.starts, r.dead_lettered),
        Err(e) => {
            tracing::warn!("{}: unreadable in-flight record ({e})", location.url);
            (1, false)
        }
    })
}

/// The dead-letter reason of a message that crashed its workers.
pub fn crashed_message(crashes: u32) -> String {
    format!(
        "the worker processing this message stopped without finishing it {crashes} times \
         (an abort or a kill, e.g. out of memory); it is not run again: replay it \
         (--error-class crashed) once the cause is fixed"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str, max_crashes: u32) -> InFlightLog {
        InFlightLog::new(
            Location::parse(&format!("memory://{name}/in-flight/group")).unwrap(),
            max_crashes,
            RetryPolicy {
                attempts: 1,
                initial_backoff_ms: 1,
                max_backoff_ms: 1,
            },
            "test".into(),
        )
    }

    #[tokio::test]
    async fn a_message_never_finished_twice_is_crashed_on_its_third_delivery() {
        let log = log("crash-count", 2);
        assert_eq!(log.begin("t", 0, 7).await, Start::Run { crashes: 0 });
        // The worker died: a new process sees the record.
        let restarted =
            InFlightLog::new(log.root.clone(), 2, log.retry.clone(), "restarted".into());
        assert_eq!(restarted.begin("t", 0, 7).await, Start::Run { crashes: 1 });
        assert_eq!(
            restarted.begin("t", 0, 7).await,
            Start::Crashed { crashes: 2 }
        );
        // Another message of the partition is untouched.
        assert_eq!(restarted.begin("t", 0, 8).await, Start::Run { crashes: 0 });
    }

    #[tokio::test]
    async fn a_finished_message_leaves_no_record() {
        let log = log("finished", 2);
        for _ in 0..3 {
            assert_eq!(log.begin("t", 1, 3).await, Start::Run { crashes: 0 });
            log.end("t", 1, 3).await;
        }
        let record = log.root.join("t/1/3.json");
        assert!(matches!(
            record.store.head(&record.path).await,
            Err(object_store::Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn an_interrupted_shutdown_is_not_counted_as_a_crash() {
        let log = log("interrupted", 1);
        assert_eq!(log.begin("t", 0, 1).await, Start::Run { crashes: 0 });
        log.release_interrupted().await;
        assert_eq!(log.begin("t", 0, 1).await, Start::Run { crashes: 0 });
        assert_eq!(log.begin("t", 0, 1).await, Start::Crashed { crashes: 1 });
    }

    #[tokio::test]
    async fn an_undecodable_record_counts_as_one_start() {
        let log = log("garbled", 1);
        let record = log.root.join("t/0/5.json");
        record
            .store
            .put(&record.path, PutPayload::from_static(b"\x00garbage"))
            .await
            .unwrap();
        assert_eq!(log.begin("t", 0, 5).await, Start::Crashed { crashes: 1 });
    }

    #[tokio::test]
    async fn a_dead_lettered_message_is_not_dead_lettered_again() {
        let log = log("dead-lettered", 2);
        assert_eq!(log.begin("t", 2, 9).await, Start::Run { crashes: 0 });
        log.mark_dead_lettered("t", 2, 9).await;
        log.end("t", 2, 9).await;
        // The worker stopped before committing: the message comes again.
        assert_eq!(log.begin("t", 2, 9).await, Start::DeadLettered);
        log.release_interrupted().await;
        assert_eq!(log.begin("t", 2, 9).await, Start::DeadLettered);
    }

    #[tokio::test]
    async fn zero_turns_the_guard_off() {
        let log = log("off", 0);
        for _ in 0..5 {
            assert_eq!(log.begin("t", 0, 1).await, Start::Run { crashes: 0 });
        }
        let record = log.root.join("t/0/1.json");
        assert!(record.store.head(&record.path).await.is_err());
    }
}
