use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pipeline: super::PipelineFlags,
    #[command(flatten)]
    queue: super::QueueFlags,
    /// Dead-letter topic.
    #[arg(long)]
    dlq_topic: Option<String>,
    /// Consumer group.
    #[arg(long)]
    group_id: Option<String>,
    /// Messages processed at once.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Address of /metrics and /healthz.
    #[arg(long)]
    metrics_addr: Option<String>,
}

pub async fn run(args: WorkerArgs) -> ExitCode {
    super::exit(
        async {
            let mut config = args.pipeline.load()?;
            config.set_queue(&args.queue.brokers, &args.queue.topic, &args.dlq_topic);
            if let Some(g) = args.group_id {
                config.worker.group_id = g;
            }
            if let Some(n) = args.concurrency {
                config.run.concurrency = n;
            }
            if let Some(a) = args.metrics_addr {
                config.worker.metrics_addr = a;
            }
            crate::worker::run(config, args.pipeline.config.clone()).await?;
            Ok(ExitCode::SUCCESS)
        }
        .await,
    )
}
