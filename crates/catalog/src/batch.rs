//! Gathers items written by many concurrent callers into batches for one sink, and hands
//! each caller its own item's outcome.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{CatalogError, CatalogSink, ItemOutcome};

type Reply = oneshot::Sender<Result<ItemOutcome, (bool, String)>>;

/// Batches items for a sink: a batch is sent when `batch_size` items are waiting or the
/// first of them has waited `linger`. Sinks that gain nothing from batches (a static
/// catalog writes one file per item) are written straight through.
pub struct BatchWriter {
    sink: Arc<dyn CatalogSink>,
    queue: Option<mpsc::Sender<(Value, Reply)>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl BatchWriter {
    pub fn new(sink: Arc<dyn CatalogSink>, batch_size: usize, linger: Duration) -> Self {
        if batch_size <= 1 || !sink.batches() {
            return BatchWriter {
                sink,
                queue: None,
                task: None,
            };
        }
        let (tx, rx) = mpsc::channel(batch_size * 2);
        let task = tokio::spawn(run(sink.clone(), rx, batch_size, linger));
        BatchWriter {
            sink,
            queue: Some(tx),
            task: Some(task),
        }
    }

    pub fn sink(&self) -> &Arc<dyn CatalogSink> {
        &self.sink
    }

    /// Writes one item (prepared and validated by the caller) and waits for its outcome.
    pub async fn write(&self, item: Value) -> Result<ItemOutcome, CatalogError> {
        let Some(queue) = &self.queue else {
            let mut outcomes = self.sink.upsert_items(vec![item]).await?;
            return Ok(outcomes.pop().unwrap_or(ItemOutcome::Unchanged));
        };
        let (reply, answer) = oneshot::channel();
        let gone = || CatalogError::Unavailable("the catalog writer has stopped".into());
        queue.send((item, reply)).await.map_err(|_| gone())?;
        match answer.await.map_err(|_| gone())? {
            Ok(outcome) => Ok(outcome),
            Err((true, message)) => Err(CatalogError::Unavailable(message)),
            Err((false, message)) => Err(CatalogError::Refused(message)),
        }
    }

    /// Sends what is waiting and stops the batching task.
    pub async fn close(mut self) {
        self.queue.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn run(
    sink: Arc<dyn CatalogSink>,
    mut rx: mpsc::Receiver<(Value, Reply)>,
    batch_size: usize,
    linger: Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < batch_size {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => batch.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let (items, replies): (Vec<Value>, Vec<Reply>) = batch.into_iter().unzip();
        let n = items.len();
        match sink.upsert_items(items).await {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for reply in replies {
                    let outcome = outcomes.next().ok_or_else(|| {
                        (
                            false,
                            format!("the catalog answered fewer than {n} outcomes"),
                        )
                    });
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                let (transient, message) = (e.is_transient(), e.to_string());
                for reply in replies {
                    let _ = reply.send(Err((transient, message.clone())));
                }
            }
        }
    }
}
