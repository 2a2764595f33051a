//! Where the outcome of each request goes: the embedded dead-letter file, the Kafka
//! dead-letter topic, the run summary.

pub mod dead_letter_topic;
pub mod failed_log;

use crate::failure::Failure;

/// What became of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Its outputs (references, item) were written or changed.
    Ingested,
    /// Everything was already in place.
    Unchanged,
    Failed(Failure),
}

/// One request at its end.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The source as the request named it.
    pub source: String,
    /// Its absolute URL (how failures are recorded).
    pub url: String,
    /// The collection its item went to, when it got that far.
    pub collection: Option<String>,
    /// Attempts made (retries of transient failures included).
    pub attempts: u32,
    pub outcome: Outcome,
}

/// Takes the outcome of every request of a run.
#[async_trait::async_trait]
pub trait OutcomeSink: Send + Sync {
    async fn record(&self, finished: &Finished) -> anyhow::Result<()>;
}

/// Counts of a run, printed at its end.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub ingested: u64,
    pub unchanged: u64,
    pub failed: u64,
    /// URLs of the sources that failed.
    pub failed_urls: std::collections::BTreeSet<String>,
    pub collections: std::collections::BTreeSet<String>,
}

impl Summary {
    pub fn add(&mut self, f: &Finished) {
        match &f.outcome {
            Outcome::Ingested => self.ingested += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Failed(_) => {
                self.failed += 1;
                self.failed_urls.insert(f.url.clone());
            }
        }
        if let (Some(c), false) = (&f.collection, matches!(f.outcome, Outcome::Failed(_))) {
            self.collections.insert(c.clone());
        }
    }

    /// The closing line of a run.
    pub fn line(&self, label: &str, catalog: &str) -> String {
        format!(
            "{label}: {} ingested, {} failed, {} skipped (unchanged); {} collections; catalog at {catalog}",
            self.ingested,
            self.failed,
            self.unchanged,
            self.collections.len()
        )
    }
}

/// The failures of a run go to the embedded dead-letter file.
#[async_trait::async_trait]
impl OutcomeSink for failed_log::FailedLog {
    async fn record(&self, f: &Finished) -> anyhow::Result<()> {
        if let Outcome::Failed(failure) = &f.outcome {
            self.record_failure(&f.url, failure.class, &failure.message)
                .await?;
        }
        Ok(())
    }
}
