//! The pipeline stages every job runs: detect, scan, write references, build and
//! validate the item, write it to the catalog. Only the source of requests and what
//! happens with the outcome differ between `ingest`, `worker`, `backfill` and `replay`.

use std::sync::Arc;

use serde_json::Value;
use zarrstac_catalog::{StaticCatalog, WriteOutcome};
use zarrstac_formats::ScanOptions;
use zarrstac_io::{Location, RangeReader};
use zarrstac_stac::{ItemOptions, StoreStyle, Validator};

use crate::config::PipelineConfig;

/// Whether retrying a failed source may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Network, throttling, an unavailable store or catalog.
    Transient,
    /// Corrupt or unsupported input, an item that violates the schemas.
    Permanent,
}

/// A source that could not be ingested.
#[derive(Debug)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    fn permanent(message: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Permanent,
            message: message.into(),
        }
    }

    fn classify(transient: bool, message: String) -> Self {
        Failure {
            class: if transient {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            },
            message,
        }
    }
}

/// What ingesting one source did.
#[derive(Debug)]
pub struct Ingested {
    pub collection: String,
    pub item_id: String,
    /// The references or the item changed (false: everything was already in place).
    pub changed: bool,
}

pub struct Pipeline {
    pub config: PipelineConfig,
    catalog: StaticCatalog,
    refs_root: Location,
    validator: Arc<Validator>,
    scan: ScanOptions,
    style: StoreStyle,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> anyhow::Result<Pipeline> {
        let scheme = config
            .output
            .catalog
            .split("://")
            .next()
            .unwrap_or_default();
        if config.output.catalog.contains("://")
            && matches!(scheme, "http" | "https" | "postgres" | "postgresql")
        {
            // A STAC API or pgstac catalog is a different sink, not a static catalog
            // written over HTTP.
            anyhow::bail!(
                "catalog {}: STAC API and pgstac sinks are not available in this version; use a path or an object-store URL for a static catalog",
                config.output.catalog
            );
        }
        let catalog = StaticCatalog::new(Location::parse(&config.output.catalog)?);
        let refs_root = Location::parse(&config.output.refs_root)?;
        let style = StoreStyle::parse(&config.stac.store_style)
            .ok_or_else(|| anyhow::anyhow!("unknown store style {}", config.stac.store_style))?;
        Ok(Pipeline {
            scan: ScanOptions {
                materialize_limit: config.refs.materialize_limit,
                ..ScanOptions::default()
            },
            catalog,
            refs_root,
            validator: Arc::new(Validator::new()),
            style,
            config,
        })
    }

    pub fn catalog(&self) -> &StaticCatalog {
        &self.catalog
    }

    /// Builds the item of one source (writing its references when it is a file), without
    /// touching the catalog.
    pub async fn build_item(
        &self,
        source: &str,
        write_refs: bool,
    ) -> Result<(Value, bool), Failure> {
        let location = Location::parse(source).map_err(|e| Failure::permanent(e.to_string()))?;
        if zarrstac_formats::zarr::is_zarr_store(&location).await {
            let dataset = zarrstac_formats::zarr::scan_zarr(location)
                .await
                .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
            let opts = ItemOptions {
                collection: self.config.stac.collection.clone(),
                store_style: self.style.clone(),
                ..ItemOptions::default()
            };
            let item = zarrstac_stac::eopf::item_for_eopf(&dataset, &opts)
                .map_err(|e| Failure::permanent(format!("{source}: {e}")))?;
            return Ok((item, false));
        }
        let reader = RangeReader::open(location)
            .await
            .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
        let mut dataset = zarrstac_formats::scan(reader.clone(), &self.scan)
            .await
            .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
        zarrstac_refs::inline_small_chunks(
            &mut dataset,
            &reader,
            self.config.refs.inline_threshold,
        )
        .await
        .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
        let collection = self
            .config
            .stac
            .collection
            .clone()
            .unwrap_or_else(|| zarrstac_stac::netcdf::family(&dataset));
        let id = zarrstac_stac::netcdf::item_id(&dataset);
        let refs = self.refs_root.join(&format!("{collection}/{id}.json"));
        let mut changed = false;
        if write_refs {
            let mut bytes = Vec::new();
            zarrstac_refs::write_kerchunk(&dataset, &mut bytes)
                .map_err(|e| Failure::permanent(e.to_string()))?;
            changed = refs
                .put_if_changed(bytes)
                .await
                .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
        }
        for r in zarrstac_refs::report(&dataset) {
            tracing::info!(target: "zarrstac::report", "{source}: {r}");
        }
        let opts = ItemOptions {
            collection: Some(collection),
            refs_href: write_refs.then(|| refs.url.clone()),
            store_style: self.style.clone(),
            source_modified: Some(reader.last_modified().to_string()),
        };
        let item = zarrstac_stac::item_for_file(&dataset, &opts)
            .map_err(|e| Failure::permanent(format!("{source}: {e}")))?;
        Ok((item, changed))
    }

    /// Validates an item against the vendored schemas; a violation is permanent.
    pub fn check(&self, item: &Value) -> Result<(), Failure> {
        let problems = self.validator.validate(item);
        if problems.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = problems.iter().take(3).map(|p| p.to_string()).collect();
        Err(Failure::permanent(format!(
            "item '{}' violates the STAC schemas ({} problems): {}",
            item["id"].as_str().unwrap_or("?"),
            problems.len(),
            shown.join("; ")
        )))
    }

    /// Runs every stage for one source.
    pub async fn ingest(&self, source: &str) -> Result<Ingested, Failure> {
        let (mut item, refs_changed) = self.build_item(source, true).await?;
        StaticCatalog::link_item(&mut item);
        self.check(&item)?;
        let collection = item["collection"].as_str().unwrap_or_default().to_string();
        let item_id = item["id"].as_str().unwrap_or_default().to_string();
        let written = self
            .catalog
            .write_item(item)
            .await
            .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
        Ok(Ingested {
            collection,
            item_id,
            changed: refs_changed || written == WriteOutcome::Written,
        })
    }
}
