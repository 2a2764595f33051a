use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use zarrstac_pipeline::PipelineConfig;
use zarrstac_pipeline::Stages;

#[derive(Args, Debug)]
pub struct ItemArgs {
    /// A NetCDF/HDF5 file or a Zarr store (EOPF product): path or URL.
    source: String,
    /// Collection id (default: the dataset family, e.g. cmip6-amon-o3 or eopf-s02msil2a).
    #[arg(long)]
    collection: Option<String>,
    /// URL of the source's references, for the store link and asset.
    #[arg(long)]
    refs: Option<String>,
    /// Write the item here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Pipeline configuration (store style).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: ItemArgs) -> ExitCode {
    match item(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn item(args: ItemArgs) -> anyhow::Result<()> {
    let mut config = PipelineConfig::load(args.config.as_deref())?;
    if args.collection.is_some() {
        config.stac.collection = args.collection.clone();
    }
    let pipeline = Stages::new(config).await?;
    let (mut item, _) = pipeline
        .build_item(&args.source, false)
        .await
        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    if let Some(refs) = &args.refs {
        crate::commands::add_store(&mut item, refs, &pipeline.config.stac.store_style);
    }
    zarrstac_catalog::StaticCatalog::link_item(&mut item);
    pipeline
        .check(&item)
        .map_err(|f| anyhow::anyhow!("{}", f.message))?;
    let mut text = serde_json::to_string_pretty(&item)?;
    text.push('\n');
    match args.output {
        Some(path) => std::fs::write(&path, text)?,
        None => print!("{text}"),
    }
    Ok(())
}
