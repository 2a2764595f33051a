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

/// Writes the files of a parquet reference store under `root`, replacing any reference
/// files a previous run left there (a store with fewer records must not keep old ones).
pub async fn write_parquet_store(
    root: &zarrstac_io::Location,
    files: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use futures::{StreamExt, TryStreamExt};
    use object_store::{ObjectStoreExt, PutPayload};
    let keep: std::collections::HashSet<String> = files
        .iter()
        .map(|(rel, _)| root.join(rel).path.to_string())
        .collect();
    let listed: Vec<object_store::ObjectMeta> = root
        .store
        .list(Some(&root.path))
        .try_collect()
        .await
        .with_context(|| format!("listing {}", root.url))?;
    for meta in listed {
        if meta.location.as_ref().ends_with(".parq") && !keep.contains(meta.location.as_ref()) {
            root.store
                .delete(&meta.location)
                .await
                .with_context(|| format!("removing {} of an earlier run", meta.location))?;
        }
    }
    futures::stream::iter(files)
        .map(|(rel, bytes)| async move {
            let at = root.join(&rel);
            at.store
                .put(&at.path, PutPayload::from(bytes))
                .await
                .with_context(|| format!("writing {}", at.url))
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
