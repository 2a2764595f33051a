use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use zarrstac_pipeline::outcome::failed_log::FailedLog;
use zarrstac_pipeline::{Runner, Stages};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Files, directories (searched for NetCDF/HDF5 files and Zarr stores) or URLs.
    #[arg(required = true)]
    sources: Vec<String>,
    #[command(flatten)]
    pipeline: super::PipelineFlags,
    /// One collection id for every item.
    #[arg(long)]
    collection: Option<String>,
    /// Sources processed at once.
    #[arg(long)]
    concurrency: Option<usize>,
}

pub async fn run(args: IngestArgs) -> ExitCode {
    super::exit(ingest(args).await)
}

async fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.pipeline.load()?;
    if args.collection.is_some() {
        config.stac.collection = args.collection;
    }
    if let Some(n) = args.concurrency {
        config.run.concurrency = n;
    }
    let failed_log = FailedLog::open(&config.output.failed)?;
    let runner = Runner::new(Arc::new(Stages::new(config).await?));
    let sources = zarrstac_pipeline::source::expand(&args.sources);
    let summary = crate::batch::run_batch(&runner, sources, &failed_log, "summary").await?;
    crate::batch::close(runner).await;
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
