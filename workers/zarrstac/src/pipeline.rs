//! The pipeline stages every job runs: detect, scan, write references, build and
//! validate the item, write it to the catalog. Only the source of requests and what
//! happens with the outcome differ between `ingest`, `worker`, `backfill` and `replay`.

use std::sync::Arc;

use object_store::ObjectStoreExt;
use serde_json::Value;
use zarrstac_catalog::{BatchWriter, CatalogSink, ItemOutcome};
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
    /// For a file of a multi-file dataset (CMIP): the dataset it belongs to. Its item is
    /// the dataset's, rebuilt by [`Pipeline::rebuild_dataset`] once the run's files are in.
    pub dataset: Option<String>,
    /// The source's absolute URL.
    pub url: String,
}

/// Reads a NetCDF/HDF5 file's metadata with its chunks of at most `inline_threshold`
/// bytes inlined: the input of references and items.
pub async fn scan_inlined(
    location: Location,
    scan: &ScanOptions,
    inline_threshold: u64,
) -> Result<(zarrstac_model::Dataset, RangeReader), Failure> {
    let reader = RangeReader::open(location)
        .await
        .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
    let mut dataset = zarrstac_formats::scan(reader.clone(), scan)
        .await
        .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
    zarrstac_refs::inline_small_chunks(&mut dataset, &reader, inline_threshold)
        .await
        .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
    Ok((dataset, reader))
}

pub struct Pipeline {
    pub config: PipelineConfig,
    writer: BatchWriter,
    refs_root: Location,
    validator: Arc<Validator>,
    scan: ScanOptions,
    style: StoreStyle,
}

impl Pipeline {
    /// Opens the catalog named in the configuration (static, STAC API or pgstac).
    pub async fn new(config: PipelineConfig) -> anyhow::Result<Pipeline> {
        let sink = zarrstac_catalog::open(&config.output.catalog, &config.catalog).await?;
        let writer = BatchWriter::new(
            sink,
            config.catalog.batch_size,
            std::time::Duration::from_millis(config.catalog.batch_linger_ms),
        );
        let refs_root = Location::parse(&config.output.refs_root)?;
        let style = StoreStyle::parse(&config.stac.store_style)
            .ok_or_else(|| anyhow::anyhow!("unknown store style {}", config.stac.store_style))?;
        Ok(Pipeline {
            scan: ScanOptions {
                materialize_limit: config.refs.materialize_limit,
                ..ScanOptions::default()
            },
            writer,
            refs_root,
            validator: Arc::new(Validator::new()),
            style,
            config,
        })
    }

    /// The catalog items go to.
    pub fn catalog(&self) -> &Arc<dyn CatalogSink> {
        self.writer.sink()
    }

    /// Sends the items still waiting in a batch; call once at the end of a run.
    pub async fn close(self) {
        self.writer.close().await;
    }

    /// Links, validates and writes an item; `Ok(true)` when the catalog changed.
    async fn publish(&self, mut item: Value) -> Result<bool, Failure> {
        self.catalog().prepare_item(&mut item);
        self.check(&item)?;
        let id = item["id"].as_str().unwrap_or("?").to_string();
        match self.writer.write(item).await {
            Ok(ItemOutcome::Written) => Ok(true),
            Ok(ItemOutcome::Unchanged) => Ok(false),
            Ok(ItemOutcome::Rejected(reason)) => Err(Failure::permanent(format!(
                "catalog {} refused item '{id}': {reason}",
                self.catalog().url()
            ))),
            Err(e) => Err(Failure::classify(
                e.is_transient(),
                format!("writing item '{id}': {e}"),
            )),
        }
    }

    async fn scan_file(
        &self,
        location: Location,
    ) -> Result<(zarrstac_model::Dataset, RangeReader), Failure> {
        scan_inlined(location, &self.scan, self.config.refs.inline_threshold).await
    }

    /// Builds the item of one source (writing its references when it is a file), without
    /// touching the catalog.
    pub async fn build_item(
        &self,
        source: &str,
        write_refs: bool,
    ) -> Result<(Value, bool), Failure> {
        self.build(source, write_refs, false, None)
            .await
            .map(|(item, changed, _)| (item, changed))
    }

    /// Builds the item of one source; with `group_datasets`, a file of a multi-file
    /// dataset gets no item of its own (its dataset's is rebuilt later) and the dataset id
    /// is returned instead.
    async fn build(
        &self,
        source: &str,
        write_refs: bool,
        group_datasets: bool,
        collection: Option<&str>,
    ) -> Result<(Value, bool, Option<String>), Failure> {
        let configured = collection
            .map(str::to_string)
            .or_else(|| self.config.stac.collection.clone());
        let location = Location::parse(source).map_err(|e| Failure::permanent(e.to_string()))?;
        if zarrstac_formats::zarr::is_zarr_store(&location).await {
            let dataset = zarrstac_formats::zarr::scan_zarr(location)
                .await
                .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
            let opts = ItemOptions {
                collection: configured.clone(),
                store_style: self.style.clone(),
                ..ItemOptions::default()
            };
            let item = zarrstac_stac::eopf::item_for_eopf(&dataset, &opts)
                .map_err(|e| Failure::permanent(format!("{source}: {e}")))?;
            return Ok((item, false, None));
        }
        let (dataset, reader) = self.scan_file(location).await?;
        let collection = configured.unwrap_or_else(|| zarrstac_stac::netcdf::family(&dataset));
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
        let dataset_id = if group_datasets {
            zarrstac_refs::combine::dataset_id(&dataset).or_else(|| {
                self.config.datasets.path_template.as_deref().and_then(|t| {
                    zarrstac_refs::combine::dataset_id_from_path(&dataset.source_url, t)
                })
            })
        } else {
            None
        };
        Ok((item, changed, dataset_id))
    }

    /// Rebuilds a multi-file dataset from every file known to belong to it (the members
    /// recorded before plus `new_members`): combined references and one dataset item.
    /// Members are kept sorted and re-read, so the result does not depend on the order in
    /// which files arrived. Returns whether anything changed.
    ///
    /// Each member is recorded as an object of its own under
    /// `<refs>/<collection>/<dataset>.members/`, so workers adding files of one dataset at
    /// once never overwrite each other's records; after writing the item the members are
    /// listed again and the item rebuilt if another worker added one meanwhile, so the
    /// last item written holds every member.
    pub async fn rebuild_dataset(
        &self,
        collection: &str,
        dataset_id: &str,
        new_members: &[String],
    ) -> Result<bool, Failure> {
        let io = |e: zarrstac_io::IoError| Failure::classify(e.is_transient(), e.to_string());
        let folder = self
            .refs_root
            .join(&format!("{collection}/{dataset_id}.members"));
        for m in new_members {
            let record = folder.join(&format!("{:016x}.json", fnv1a(m.as_bytes())));
            let body = serde_json::to_vec(m).map_err(|e| Failure::permanent(e.to_string()))?;
            record.put_if_changed(body).await.map_err(io)?;
        }
        let mut changed = false;
        let mut members = self.list_members(&folder).await?;
        loop {
            changed |= self.write_dataset(collection, dataset_id, &members).await?;
            let now = self.list_members(&folder).await?;
            if now == members {
                return Ok(changed);
            }
            members = now;
        }
    }

    async fn list_members(
        &self,
        folder: &Location,
    ) -> Result<std::collections::BTreeSet<String>, Failure> {
        use futures::TryStreamExt;
        let transient =
            |e: object_store::Error| Failure::classify(true, format!("{}: {e}", folder.url));
        let listed: Vec<object_store::ObjectMeta> = folder
            .store
            .list(Some(&folder.path))
            .try_collect()
            .await
            .map_err(transient)?;
        let mut members = std::collections::BTreeSet::new();
        for meta in listed {
            let bytes = folder
                .store
                .get(&meta.location)
                .await
                .map_err(transient)?
                .bytes()
                .await
                .map_err(transient)?;
            let url: String = serde_json::from_slice(&bytes)
                .map_err(|e| Failure::permanent(format!("{}: {e}", meta.location)))?;
            members.insert(url);
        }
        Ok(members)
    }

    /// Combined references and the dataset item for the given members.
    async fn write_dataset(
        &self,
        collection: &str,
        dataset_id: &str,
        members: &std::collections::BTreeSet<String>,
    ) -> Result<bool, Failure> {
        let io = |e: zarrstac_io::IoError| Failure::classify(e.is_transient(), e.to_string());
        let mut files = Vec::with_capacity(members.len());
        for m in members {
            let location = Location::parse(m).map_err(|e| Failure::permanent(e.to_string()))?;
            files.push(self.scan_file(location).await?.0);
        }
        let combined = zarrstac_refs::combine(files.clone())
            .map_err(|e| Failure::permanent(format!("dataset {dataset_id}: {e}")))?;
        // Named like the dataset's item: the id with its version.
        let item_id = zarrstac_stac::netcdf::dataset_item_id(dataset_id, &files);
        let refs = self.refs_root.join(&format!("{collection}/{item_id}.json"));
        let mut bytes = Vec::new();
        zarrstac_refs::write_kerchunk(&combined, &mut bytes)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        let mut changed = refs.put_if_changed(bytes).await.map_err(io)?;
        let opts = ItemOptions {
            collection: Some(collection.to_string()),
            refs_href: Some(refs.url.clone()),
            store_style: self.style.clone(),
            source_modified: None,
        };
        let item = zarrstac_stac::netcdf::item_for_dataset(dataset_id, &files, &combined, &opts)
            .map_err(|e| Failure::permanent(format!("dataset {dataset_id}: {e}")))?;
        changed |= self.publish(item).await?;
        // The item id carries the dataset version, which can move as files arrive: the
        // item published before under another id is superseded.
        let record = self
            .refs_root
            .join(&format!("{collection}/{dataset_id}.item.json"));
        let previous: Option<String> = match record.store.get(&record.path).await {
            Ok(r) => r
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
            Err(_) => None,
        };
        if let Some(old) = previous.filter(|old| *old != item_id) {
            self.catalog()
                .delete_item(collection, &old)
                .await
                .map_err(|e| Failure::classify(e.is_transient(), e.to_string()))?;
            let old_refs = self.refs_root.join(&format!("{collection}/{old}.json"));
            let _ = old_refs.store.delete(&old_refs.path).await;
            changed = true;
        }
        let body = serde_json::to_vec(&item_id).map_err(|e| Failure::permanent(e.to_string()))?;
        record.put_if_changed(body).await.map_err(io)?;
        Ok(changed)
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

    /// Runs every stage for one source. A file of a multi-file dataset gets its references
    /// written and is reported with its dataset; its item is the dataset's.
    pub async fn ingest(&self, source: &str) -> Result<Ingested, Failure> {
        self.ingest_into(source, None).await
    }

    /// [`Pipeline::ingest`] with the collection chosen by the request (else configured or
    /// by dataset family).
    pub async fn ingest_into(
        &self,
        source: &str,
        collection: Option<&str>,
    ) -> Result<Ingested, Failure> {
        let url = Location::parse(source)
            .map(|l| l.url)
            .unwrap_or_else(|_| source.to_string());
        let (item, refs_changed, dataset) = self.build(source, true, true, collection).await?;
        let collection = item["collection"].as_str().unwrap_or_default().to_string();
        let item_id = item["id"].as_str().unwrap_or_default().to_string();
        if dataset.is_some() {
            return Ok(Ingested {
                collection,
                item_id,
                changed: refs_changed,
                dataset,
                url,
            });
        }
        let written = self.publish(item).await?;
        Ok(Ingested {
            collection,
            item_id,
            changed: refs_changed || written,
            dataset: None,
            url,
        })
    }
}

/// FNV-1a: a stable short name for a member's record (its URL may be too long for one).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
