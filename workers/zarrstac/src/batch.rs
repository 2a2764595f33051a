//! Batch runs with a progress bar and a closing summary line: what `ingest`,
//! `backfill --inline` (per page) and `replay` share.

use std::sync::Arc;

use zarrstac_pipeline::outcome::failed_log::FailedLog;
use zarrstac_pipeline::{Request, Runner, Summary};

/// Runs a batch of sources with a progress bar, failures to `failed_log`, and prints the
/// summary line: what `ingest`, `backfill --inline` (per page) and `replay` share.
pub async fn run_batch(
    runner: &Runner,
    sources: Vec<String>,
    failed_log: &FailedLog,
    label: &str,
) -> anyhow::Result<Summary> {
    let bar = crate::progress::Bar::new(sources.len() as u64);
    let requests = sources.into_iter().map(Request::new).collect();
    let summary = runner.run_batch(requests, failed_log, &bar).await;
    bar.finish();
    let summary = summary?;
    eprintln!("{}", summary.line(label, &runner.stages().catalog().url()));
    Ok(summary)
}

/// Sends what the catalog still holds in a batch.
pub async fn close(runner: Runner) {
    let stages = runner.into_stages();
    if let Ok(stages) = Arc::try_unwrap(stages) {
        stages.close().await;
    }
}
