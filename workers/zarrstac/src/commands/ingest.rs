use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use zarrstac_pipeline::outcome::failed_log::FailedLog;
use zarrstac_pipeline::{PipelineConfig, Runner, Stages};

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Files, directories (searched for NetCDF/HDF5 files and Zarr stores) or URLs.
    #[arg(required = true)]
    sources: Vec<String>,
    /// Pipeline configuration (default: ./pipeline.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Catalog: a path or object-store URL (static catalog), an http(s) STAC API URL or a
    /// postgresql:// pgstac database.
    #[arg(long)]
    catalog: Option<String>,
    /// Where references are written (path or URL).
    #[arg(long)]
    refs_root: Option<String>,
    /// One collection id for every item.
    #[arg(long)]
    collection: Option<String>,
    /// Sources processed at once.
    #[arg(long)]
    concurrency: Option<usize>,
}

pub async fn run(args: IngestArgs) -> ExitCode {
    match ingest(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut config = PipelineConfig::load(args.config.as_deref())?;
    if let Some(c) = args.catalog {
        config.output.catalog = c;
    }
    if let Some(r) = args.refs_root {
        config.output.refs_root = r;
    }
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
