//! `zarrstac serve`: the asset API over a pgstac database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use zarrstac_pipeline::PipelineConfig;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Pipeline configuration (default: ./pipeline.toml when present); `[serve]` applies.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The pgstac database (postgresql://...); default: serve.catalog, else
    /// output.catalog.
    #[arg(long)]
    catalog: Option<String>,
    /// Address to listen on (default: serve.addr, 127.0.0.1:8083).
    #[arg(long)]
    addr: Option<String>,
}

pub async fn run(args: ServeArgs) -> ExitCode {
    super::exit(serve(args).await)
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = PipelineConfig::load(args.config.as_deref())?;
    let mut serve = config.serve.clone();
    if let Some(a) = args.addr {
        serve.addr = a;
    }
    let catalog = args
        .catalog
        .or(serve.catalog.clone())
        .unwrap_or(config.output.catalog.clone());
    if !(catalog.starts_with("postgresql://") || catalog.starts_with("postgres://")) {
        anyhow::bail!(
            "serve needs a pgstac database (postgresql://...), not {}: pass --catalog or set serve.catalog",
            zarrstac_catalog::redact(&catalog)
        );
    }
    eprintln!(
        "asset API on http://{} over {}",
        serve.addr,
        zarrstac_catalog::redact(&catalog)
    );
    zarrstac_asset_api::serve(&serve, &catalog).await?;
    Ok(ExitCode::SUCCESS)
}
