use std::process::ExitCode;

use clap::Args;

use zarrstac_pipeline::outcome::failed_log::{
    FailedLog, FailedRecord, ReplayFilter, read_records, write_records,
};
use zarrstac_pipeline::{Runner, Stages};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pipeline: super::PipelineFlags,
    /// The dead-letter file (default: output.failed of the configuration).
    #[arg(long)]
    failed: Option<String>,
    /// Only records of this error class (transient, permanent).
    #[arg(long)]
    error_class: Option<String>,
    /// Only sources whose URL matches this glob (e.g. 's3://bucket/cmip6/**').
    #[arg(long = "match")]
    glob: Option<String>,
    /// Only records that failed at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only records that failed before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// Show what would be replayed and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --brokers: replay the dead-letter topic to the topic (without: the embedded
    /// pipeline's dead-letter file).
    #[command(flatten)]
    queue: super::QueueFlags,
    /// Dead-letter topic (Kafka mode; default worker.dlq_topic).
    #[arg(long)]
    dlq_topic: Option<String>,
}

fn parse_time(
    flag: &str,
    t: &Option<String>,
) -> anyhow::Result<Option<chrono::DateTime<chrono::FixedOffset>>> {
    t.as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| anyhow::anyhow!("--{flag} {t}: not an RFC 3339 time: {e}"))
        })
        .transpose()
}

impl ReplayArgs {
    pub fn filter(&self) -> anyhow::Result<ReplayFilter> {
        Ok(ReplayFilter {
            error_class: self.error_class.clone(),
            glob: self
                .glob
                .as_deref()
                .map(|g| {
                    globset::Glob::new(g)
                        .map(|g| g.compile_matcher())
                        .map_err(|e| anyhow::anyhow!("--match {g}: {e}"))
                })
                .transpose()?,
            since: parse_time("since", &self.since)?,
            until: parse_time("until", &self.until)?,
        })
    }
}

pub async fn run(args: ReplayArgs) -> ExitCode {
    super::exit(replay(args).await)
}

/// Replays the embedded pipeline's dead-letter file: the selected sources run again;
/// those that now succeed leave the file, those that fail again stay with their attempt
/// count raised and the new reason.
async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.pipeline.load()?;
    if let Some(f) = &args.failed {
        config.output.failed = f.clone();
    }
    let filter = args.filter()?;
    if args.queue.brokers.is_some() || args.dlq_topic.is_some() {
        config.set_queue(&args.queue.brokers, &args.queue.topic, &args.dlq_topic);
        let wc = &config.worker;
        let done = crate::worker::replay::replay_dlq(wc, &filter, args.limit, args.dry_run).await?;
        eprintln!(
            "replay: {} {} to {}, {} kept in {}{}",
            done.moved,
            if args.dry_run {
                "would move"
            } else {
                "moved back"
            },
            wc.topic,
            done.kept,
            wc.dlq_topic,
            if args.dry_run { " (dry run)" } else { "" }
        );
        if done.unread > 0 {
            eprintln!(
                "replay: stopped with {} records of {} not read: the broker served nothing for {} s; run replay again to go on",
                done.unread,
                wc.dlq_topic,
                crate::worker::replay::BROKER_SILENCE.as_secs()
            );
            return Ok(ExitCode::FAILURE);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = config.output.failed.clone();
    let records = read_records(&path)?;
    let mut chosen: Vec<&FailedRecord> = records.iter().filter(|r| r.selected(&filter)).collect();
    if let Some(n) = args.limit {
        chosen.truncate(n);
    }
    if args.dry_run {
        for r in &chosen {
            println!(
                "{}\t{}\tattempt {}\t{}",
                r.source, r.error_class, r.attempt, r.message
            );
        }
        eprintln!(
            "summary: {} of {} records would be replayed (dry run)",
            chosen.len(),
            records.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if chosen.is_empty() {
        eprintln!(
            "summary: nothing to replay ({} records in {path})",
            records.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Failures of this run go to a file of their own, merged below.
    let scratch = format!("{}.replay", path.strip_prefix("file://").unwrap_or(&path));
    let _ = std::fs::remove_file(&scratch);
    let scratch_log = FailedLog::open(&scratch)?;
    let sources: Vec<String> = chosen.iter().map(|r| r.source.clone()).collect();
    let runner = Runner::new(std::sync::Arc::new(Stages::new(config).await?));
    let summary =
        crate::batch::run_batch(&runner, sources.clone(), &scratch_log, "summary").await?;
    crate::batch::close(runner).await;
    let again = read_records(&scratch)?;
    let chosen_sources: std::collections::BTreeSet<&str> =
        chosen.iter().map(|r| r.source.as_str()).collect();
    let mut kept: Vec<FailedRecord> = Vec::new();
    for r in &records {
        if !chosen_sources.contains(r.source.as_str()) {
            kept.push(r.clone());
        }
    }
    for mut r in again {
        let before = records
            .iter()
            .filter(|o| o.source == r.source)
            .map(|o| o.attempt)
            .max()
            .unwrap_or(0);
        r.attempt = before + 1;
        kept.push(r);
    }
    write_records(&path, &kept)?;
    let _ = std::fs::remove_file(&scratch);
    eprintln!(
        "replay: {} moved back, {} landed, {} failed again; {} records left in {path}",
        sources.len(),
        sources.len() as u64 - summary.failed_urls.len() as u64,
        summary.failed_urls.len(),
        kept.len()
    );
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
