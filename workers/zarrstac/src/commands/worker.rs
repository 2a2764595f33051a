use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use zarrstac_pipeline::PipelineConfig;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Pipeline configuration (default: ./pipeline.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kafka bootstrap servers (HOST:PORT,...).
    #[arg(long)]
    brokers: Option<String>,
    /// Topic of ingestion requests and object-store events.
    #[arg(long)]
    topic: Option<String>,
    /// Dead-letter topic.
    #[arg(long)]
    dlq_topic: Option<String>,
    /// Consumer group.
    #[arg(long)]
    group_id: Option<String>,
    /// Catalog: a static catalog path or URL, an http(s) STAC API or a postgresql:// pgstac.
    #[arg(long)]
    catalog: Option<String>,
    /// Where references are written (path or URL).
    #[arg(long)]
    refs_root: Option<String>,
    /// Messages processed at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Address of /metrics and /healthz.
    #[arg(long)]
    metrics_addr: Option<String>,
}

pub async fn run(args: WorkerArgs) -> ExitCode {
    let result = async {
        let mut config = PipelineConfig::load(args.config.as_deref())?;
        let config_path = args.config.clone();
        config.set_queue(&args.brokers, &args.topic, &args.dlq_topic);
        if let Some(g) = args.group_id {
            config.worker.group_id = g;
        }
        if let Some(c) = args.catalog {
            config.output.catalog = c;
        }
        if let Some(r) = args.refs_root {
            config.output.refs_root = r;
        }
        if let Some(n) = args.concurrency {
            config.run.concurrency = n;
        }
        if let Some(a) = args.metrics_addr {
            config.worker.metrics_addr = a;
        }
        crate::worker::run(config, config_path).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
