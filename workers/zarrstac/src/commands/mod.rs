pub mod backfill;
pub mod combine;
pub mod ingest;
pub mod item;
pub mod publish;
pub mod refs;
pub mod replay;
pub mod serve;
pub mod validate;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use zarrstac_pipeline::PipelineConfig;

/// The flags every pipeline command takes: its configuration and where outputs go, over
/// `pipeline.toml` and the environment.
#[derive(clap::Args, Debug)]
pub struct PipelineFlags {
    /// Pipeline configuration (default: ./pipeline.toml when present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Catalog: a path or object-store URL (static catalog), an http(s) STAC API URL or a
    /// postgresql:// pgstac database.
    #[arg(long)]
    pub catalog: Option<String>,
    /// Where references are written (path or URL).
    #[arg(long)]
    pub refs_root: Option<String>,
}

impl PipelineFlags {
    pub fn load(&self) -> anyhow::Result<PipelineConfig> {
        let mut config = PipelineConfig::load(self.config.as_deref())?;
        if let Some(c) = &self.catalog {
            config.output.catalog = c.clone();
        }
        if let Some(r) = &self.refs_root {
            config.output.refs_root = r.clone();
        }
        Ok(config)
    }
}

/// The Kafka flags of the queue commands.
#[derive(clap::Args, Debug)]
pub struct QueueFlags {
    /// Kafka bootstrap servers (HOST:PORT,...).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Topic of ingestion requests and object-store events.
    #[arg(long)]
    pub topic: Option<String>,
}

/// A command's exit status: its own, or failure with its error on one line.
pub fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

/// Adds the store link and group asset of a references URL to an item built without one.
pub fn add_store(item: &mut serde_json::Value, refs: &str, style: &str) {
    let media = zarrstac_stac::StoreStyle::parse(style)
        .unwrap_or(zarrstac_stac::StoreStyle::Kerchunk)
        .media_type();
    if let Some(links) = item["links"].as_array_mut() {
        links.push(serde_json::json!({"rel": "store", "href": refs, "type": media, "title": "Virtual Zarr store"}));
    }
    let mut asset = serde_json::json!({
        "href": refs, "type": media, "roles": ["data", "references"],
        "zarr:node_type": "group", "zarr:zarr_format": 2,
    });
    // The bands and parameters describe the store's group, so they move to it.
    if let Some(source) = item["assets"]["source"].as_object_mut() {
        for key in ["bands", "cf:parameter"] {
            if let Some(v) = source.remove(key) {
                asset[key] = v;
            }
        }
    }
    item["assets"]["zarr"] = asset;
    if let Some(exts) = item["stac_extensions"].as_array_mut() {
        let zarr = serde_json::json!(zarrstac_stac::item::ZARR);
        if !exts.contains(&zarr) {
            exts.push(zarr);
        }
    }
}
