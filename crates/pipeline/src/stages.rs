//! The stages every job runs for one source: detect, scan, write references, build and
//! validate the item, write it to the catalog. A file of a multi-file dataset stops after
//! its references: its item is its dataset's ([`crate::datasets`]).

use std::sync::Arc;

use object_store::ObjectStoreExt;
use serde_json::Value;
use zarrstac_catalog::{BatchWriter, CatalogSink, ItemOutcome};
use zarrstac_formats::ScanOptions;
use zarrstac_io::{Location, RangeReader};
use zarrstac_model::Dataset;
use zarrstac_stac::{ItemOptions, StoreStyle, Validator};

use crate::config::PipelineConfig;
use crate::failure::Failure;
use crate::pid_table::PidTable;
use crate::source::{SourceKind, ZARR_V2_MARKERS, ZARR_V3_MARKER, detect};

/// Reads a NetCDF/HDF5 file's metadata with its chunks of at most `inline_threshold`
/// bytes inlined: the input of references and items.
pub async fn scan_inlined(
    reader: RangeReader,
    scan: &ScanOptions,
    inline_threshold: u64,
) -> Result<Dataset, Failure> {
    let mut dataset = zarrstac_formats::scan(reader.clone(), scan).await?;
    zarrstac_refs::inline_small_chunks(&mut dataset, &reader, inline_threshold).await?;
    Ok(dataset)
}

/// A file of a multi-file dataset, scanned and with its own references written.
#[derive(Debug, Clone)]
pub struct MemberFile {
    pub collection: String,
    /// The dataset it belongs to.
    pub dataset_id: String,
    /// Its metadata as read (chunks inlined as in its references).
    pub dataset: Dataset,
    /// Its own references changed.
    pub refs_changed: bool,
    /// What the request said of the dataset.
    pub publication: DatasetPublication,
}

/// What an ingest request may say of the dataset its file belongs to, beyond what the
/// file carries: the dataset's handle and whether it was retracted. Kept with the
/// dataset's state: a later request that says nothing keeps what an earlier one said.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetPublication {
    pub pid: Option<String>,
    pub retracted: Option<bool>,
}

impl DatasetPublication {
    /// `self` with what `newer` says over it.
    pub fn updated_by(&self, newer: &DatasetPublication) -> DatasetPublication {
        DatasetPublication {
            pid: newer.pid.clone().or_else(|| self.pid.clone()),
            retracted: newer.retracted.or(self.retracted),
        }
    }

    /// What requests said, each over the ones before it.
    pub fn of_all<'a>(said: impl IntoIterator<Item = &'a DatasetPublication>) -> Self {
        said.into_iter()
            .fold(DatasetPublication::default(), |p, newer| {
                p.updated_by(newer)
            })
    }
}

/// What the stages did with one source.
#[derive(Debug, Clone)]
pub enum Staged {
    /// The source's own item is in the catalog.
    Item {
        collection: String,
        item_id: String,
        changed: bool,
    },
    /// A file of a multi-file dataset: its dataset's item is still to be rebuilt.
    Member(Box<MemberFile>),
}

pub struct Stages {
    pub config: PipelineConfig,
    writer: BatchWriter,
    refs_root: Location,
    validator: Arc<Validator>,
    scan: ScanOptions,
    style: StoreStyle,
    /// `datasets.pid_table`, read once.
    pid_table: tokio::sync::OnceCell<Option<Arc<PidTable>>>,
    /// Datasets already told about why their item does not declare the cmip6 extension.
    undeclared: parking_lot::Mutex<std::collections::HashSet<String>>,
}

impl Stages {
    /// Opens the catalog named in the configuration (static, STAC API or pgstac).
    pub async fn new(config: PipelineConfig) -> anyhow::Result<Stages> {
        let sink = zarrstac_catalog::open(&config.output.catalog, &config.catalog).await?;
        let stages = Stages::with_sink(config, sink)?;
        // A table that cannot be read stops the job before it ingests anything.
        stages
            .pid_table()
            .await
            .map_err(|f| anyhow::anyhow!(f.message))?;
        Ok(stages)
    }

    /// The stages writing into `sink` (any catalog, an in-memory one in tests).
    pub fn with_sink(config: PipelineConfig, sink: Arc<dyn CatalogSink>) -> anyhow::Result<Stages> {
        let writer = BatchWriter::new(
            sink,
            config.catalog.batch_size,
            std::time::Duration::from_millis(config.catalog.batch_linger_ms),
        );
        let refs_root = Location::parse(&config.output.refs_root)?;
        let style = StoreStyle::parse(&config.stac.store_style)
            .ok_or_else(|| anyhow::anyhow!("unknown store style {}", config.stac.store_style))?;
        Ok(Stages {
            scan: ScanOptions {
                materialize_limit: config.refs.materialize_limit,
                ..ScanOptions::default()
            },
            writer,
            refs_root,
            validator: Arc::new(Validator::new()),
            style,
            config,
            pid_table: tokio::sync::OnceCell::new(),
            undeclared: Default::default(),
        })
    }

    /// The PID table of `datasets.pid_table`, read on first use.
    pub async fn pid_table(&self) -> Result<Option<&PidTable>, Failure> {
        let table = self
            .pid_table
            .get_or_try_init(|| async {
                match &self.config.datasets.pid_table {
                    None => Ok::<_, Failure>(None),
                    Some(source) => {
                        let table = PidTable::load(source)
                            .await
                            .map_err(|e| Failure::permanent(format!("datasets.pid_table: {e}")))?;
                        tracing::info!(
                            "datasets.pid_table: {} datasets from {source}",
                            table.len()
                        );
                        Ok(Some(Arc::new(table)))
                    }
                }
            })
            .await?;
        Ok(table.as_deref())
    }

    /// The schemas items are validated against.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Says once per run and dataset why its item does not declare the cmip6 extension.
    pub fn report_undeclared(&self, item_id: &str, reason: &str) {
        if self.undeclared.lock().insert(item_id.to_string()) {
            tracing::warn!("dataset item {item_id}: the cmip6 extension is not declared: {reason}");
        }
    }

    /// The catalog items go to.
    pub fn catalog(&self) -> &Arc<dyn CatalogSink> {
        self.writer.sink()
    }

    /// Where references (and dataset state) are written.
    pub fn refs_root(&self) -> &Location {
        &self.refs_root
    }

    pub fn style(&self) -> &StoreStyle {
        &self.style
    }

    /// Sends the items still waiting in a batch; call once at the end of a run.
    pub async fn close(self) {
        self.writer.close().await;
    }

    /// Links, validates and writes an item; `Ok(true)` when the catalog changed.
    pub async fn publish(&self, mut item: Value) -> Result<bool, Failure> {
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

    fn item_options(&self, collection: Option<String>) -> ItemOptions {
        ItemOptions {
            collection,
            store_style: self.style.clone(),
            ..ItemOptions::default()
        }
    }

    /// Builds the item of one source (writing its references when it is a file), without
    /// touching the catalog. `Ok((item, references changed))`.
    pub async fn build_item(
        &self,
        source: &str,
        write_refs: bool,
    ) -> Result<(Value, bool), Failure> {
        let configured = self.config.stac.collection.clone();
        match self.read(source, configured).await? {
            Read::Zarr(item) => Ok((item, false)),
            Read::File {
                dataset,
                collection,
                reader,
            } => {
                let collection =
                    collection.unwrap_or_else(|| zarrstac_stac::netcdf::family(&dataset));
                self.file_item(&dataset, &collection, &reader, write_refs)
                    .await
            }
        }
    }

    /// Runs every stage for one source, with the collection chosen by the request (else
    /// configured, else `CMIP6` for a file of a CMIP6 dataset, else by dataset family).
    /// `publication`: what the request says of the file's dataset.
    pub async fn stage(
        &self,
        source: &str,
        collection: Option<&str>,
        publication: &DatasetPublication,
    ) -> Result<Staged, Failure> {
        let configured = collection
            .map(str::to_string)
            .or_else(|| self.config.stac.collection.clone());
        match self.read(source, configured).await? {
            Read::Zarr(item) => {
                let collection = item["collection"].as_str().unwrap_or_default().to_string();
                let item_id = item["id"].as_str().unwrap_or_default().to_string();
                let changed = self.publish(item).await?;
                Ok(Staged::Item {
                    collection,
                    item_id,
                    changed,
                })
            }
            Read::File {
                dataset,
                collection,
                reader,
            } => {
                // What became of each variable, named by the source as the request gave it.
                for r in zarrstac_refs::report(&dataset) {
                    tracing::info!(target: "zarrstac::report", "{source}: {r}");
                }
                if let Some(dataset_id) = self.dataset_of(&dataset) {
                    let collection = collection
                        .unwrap_or_else(|| zarrstac_stac::netcdf::dataset_collection(&dataset));
                    let id = zarrstac_stac::netcdf::item_id(&dataset);
                    let refs_changed = self.write_refs(&dataset, &collection, &id).await?;
                    return Ok(Staged::Member(Box::new(MemberFile {
                        collection,
                        dataset_id,
                        dataset: *dataset,
                        refs_changed,
                        publication: publication.clone(),
                    })));
                }
                let collection =
                    collection.unwrap_or_else(|| zarrstac_stac::netcdf::family(&dataset));
                let (item, refs_changed) =
                    self.file_item(&dataset, &collection, &reader, true).await?;
                let item_id = item["id"].as_str().unwrap_or_default().to_string();
                let written = self.publish(item).await?;
                Ok(Staged::Item {
                    collection,
                    item_id,
                    changed: refs_changed || written,
                })
            }
        }
    }

    /// Detects what `source` is and reads it: a Zarr store to its item, a file to its
    /// metadata.
    async fn read(&self, source: &str, collection: Option<String>) -> Result<Read, Failure> {
        let location = Location::parse(source).map_err(|e| Failure::permanent(e.to_string()))?;
        let detected = detect(&location).await?;
        let url = location.url.clone();
        match (detected.kind, detected.reader) {
            (kind @ (SourceKind::ZarrV2 | SourceKind::ZarrV3), _) => {
                let (dataset, root_documents) = if kind == SourceKind::ZarrV2 {
                    let d = zarrstac_formats::zarr::scan_zarr(location.clone()).await?;
                    (d, ZARR_V2_MARKERS)
                } else {
                    let d = zarrstac_formats::zarr_v3::scan_zarr_v3(location.clone()).await?;
                    (d, std::slice::from_ref(&ZARR_V3_MARKER))
                };
                let mut opts = self.item_options(collection);
                let item = match zarrstac_stac::item_for_zarr(&dataset, &opts) {
                    // A store that states no time: its root metadata's modification time.
                    Err(zarrstac_stac::ItemError::NoTime(_)) => {
                        opts.source_modified = modified(&location, root_documents).await;
                        zarrstac_stac::item_for_zarr(&dataset, &opts)
                    }
                    built => built,
                }
                .map_err(|e| Failure::permanent(format!("{url}: {e}")))?;
                Ok(Read::Zarr(item))
            }
            (SourceKind::NetCdf3 | SourceKind::Hdf5, Some(reader)) => {
                let dataset = scan_inlined(
                    reader.clone(),
                    &self.scan,
                    self.config.refs.inline_threshold,
                )
                .await?;
                Ok(Read::File {
                    dataset: Box::new(dataset),
                    collection,
                    reader,
                })
            }
            (kind, _) => Err(Failure::permanent(format!(
                "{url}: a {} is not a source this job ingests{}",
                kind.name(),
                match kind {
                    SourceKind::KerchunkReferences => {
                        " (references are combined with `zarrstac combine`)"
                    }
                    _ => "",
                }
            ))),
        }
    }

    /// The multi-file dataset a file belongs to: by its CMIP attributes, else by the
    /// configured path template.
    fn dataset_of(&self, dataset: &Dataset) -> Option<String> {
        zarrstac_refs::combine::dataset_id(dataset).or_else(|| {
            self.config
                .datasets
                .path_template
                .as_deref()
                .and_then(|t| zarrstac_refs::combine::dataset_id_from_path(&dataset.source_url, t))
        })
    }

    /// Where a file's (or a dataset's) references go.
    pub fn refs_location(&self, collection: &str, id: &str) -> Location {
        self.refs_root.join(&format!("{collection}/{id}.json"))
    }

    /// Writes a dataset's kerchunk references; `Ok(true)` when they changed.
    pub async fn write_refs(
        &self,
        dataset: &Dataset,
        collection: &str,
        id: &str,
    ) -> Result<bool, Failure> {
        let bytes = zarrstac_refs::kerchunk_bytes(dataset)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        self.put_refs(bytes, collection, id).await
    }

    /// Stores encoded references; `Ok(true)` when they changed.
    pub async fn put_refs(
        &self,
        bytes: Vec<u8>,
        collection: &str,
        id: &str,
    ) -> Result<bool, Failure> {
        Ok(self
            .refs_location(collection, id)
            .put_if_changed(bytes)
            .await?)
    }

    async fn file_item(
        &self,
        dataset: &Dataset,
        collection: &str,
        reader: &RangeReader,
        write_refs: bool,
    ) -> Result<(Value, bool), Failure> {
        let id = zarrstac_stac::netcdf::item_id(dataset);
        let changed = if write_refs {
            self.write_refs(dataset, collection, &id).await?
        } else {
            false
        };
        let opts = ItemOptions {
            collection: Some(collection.to_string()),
            refs_href: write_refs.then(|| self.refs_location(collection, &id).url),
            store_style: self.style.clone(),
            source_modified: Some(reader.last_modified().to_string()),
            max_item_assets: None,
        };
        let item = zarrstac_stac::item_for_file(dataset, &opts)
            .map_err(|e| Failure::permanent(format!("{}: {e}", dataset.source_url)))?;
        Ok((item, changed))
    }
}

/// When the first of a store's root documents that exists was last modified (RFC 3339).
async fn modified(store: &Location, documents: &[&str]) -> Option<String> {
    for name in documents {
        let at = store.join(name);
        if let Ok(meta) = store.store.head(&at.path).await {
            return Some(
                meta.last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
    }
    None
}

enum Read {
    Zarr(Value),
    File {
        dataset: Box<Dataset>,
        /// The collection asked for; `None`: chosen by what the file is.
        collection: Option<String>,
        reader: RangeReader,
    },
}
