//! Multi-file datasets: membership records, the stored state of each dataset, and
//! rebuilds of the dataset's combined references and item.
//!
//! Under `<refs root>/<collection>/` a dataset keeps
//! - `<dataset id>.members/<hash>.member`: one record per file, its metadata as read
//!   (compact, binary), written once when the file is ingested;
//! - `<dataset id>.dataset`: the dataset's state, its files' summaries and the
//!   combination so far.
//!
//! A rebuild reads the state, never a member's source file: a file whose time range
//! comes after the last one's is appended to the stored combination; a file landing in
//! the middle, or a changed file, recombines from the stored records. The outputs (the
//! combined references, the dataset item) are written before the state, so a rebuild
//! that fails half-way is redone in full by its retry. Concurrent writers of one
//! dataset's state are serialized by a lock file (local paths) or conditional puts
//! (object stores): the loser reads the winner's state and rebuilds on top of it.

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use zarrstac_catalog::AssetDocuments;
use zarrstac_io::Location;
use zarrstac_model::Dataset;
use zarrstac_refs::combine::Combination;
use zarrstac_stac::ItemOptions;
use zarrstac_stac::netcdf::{
    DatasetMember, asset_document, dataset_item_id, in_document_order, item_for_dataset,
    keeps_file_assets,
};

use crate::failure::Failure;
use crate::stages::{MemberFile, Stages};

/// Bumped when the stored layout changes; older states are rebuilt from the records.
const STATE_FORMAT: u32 = 3;
const STATE_MAGIC: &[u8; 8] = b"ZSTDSET\0";
const RECORD_SUFFIX: &str = ".member";

#[derive(Serialize, Deserialize)]
struct DatasetState {
    format: u32,
    /// The files' summaries, sorted by URL.
    members: Vec<DatasetMember>,
    combination: Combination,
    /// The id the dataset's item was last published under.
    item_id: String,
    /// How many asset documents the catalog holds for that item, when it holds them.
    /// A list that only gained documents is resent from the first new one on.
    documents: Option<usize>,
}

/// What a rebuild knows of the outputs written before it.
struct Previous {
    item_id: Option<String>,
    documents: Option<usize>,
    /// The members were only added to (no member changed).
    only_added: bool,
    /// URLs of the members added.
    added: std::collections::HashSet<String>,
}

fn encode_state(state: &DatasetState) -> Result<Vec<u8>, Failure> {
    let mut out = STATE_MAGIC.to_vec();
    postcard::to_io(state, &mut out)
        .map_err(|e| Failure::permanent(format!("encoding dataset state: {e}")))?;
    Ok(out)
}

fn decode_state(bytes: &[u8]) -> Option<DatasetState> {
    let body = bytes.strip_prefix(STATE_MAGIC)?;
    postcard::from_bytes::<DatasetState>(body)
        .ok()
        .filter(|s| s.format == STATE_FORMAT)
}

fn store_error(url: &str, e: object_store::Error) -> Failure {
    let transient = !matches!(
        e,
        object_store::Error::InvalidPath { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    );
    Failure::classify(transient, format!("{url}: {e}"))
}

/// Where one dataset keeps its records and state.
struct DatasetPlace {
    collection: String,
    dataset_id: String,
    records: Location,
    state: Location,
}

impl DatasetPlace {
    fn new(refs_root: &Location, collection: &str, dataset_id: &str) -> Self {
        DatasetPlace {
            collection: collection.to_string(),
            dataset_id: dataset_id.to_string(),
            records: refs_root.join(&format!("{collection}/{dataset_id}.members")),
            state: refs_root.join(&format!("{collection}/{dataset_id}.dataset")),
        }
    }

    fn record(&self, url: &str) -> Location {
        self.records.join(&format!(
            "{:016x}{RECORD_SUFFIX}",
            zarrstac_io::fnv1a(url.as_bytes())
        ))
    }

    /// Writes a member's record; `Ok(true)` when it is new or changed.
    async fn write_record(&self, file: &Dataset) -> Result<bool, Failure> {
        let bytes = postcard::to_stdvec(file)
            .map_err(|e| Failure::permanent(format!("encoding {}: {e}", file.source_url)))?;
        Ok(self.record(&file.source_url).put_if_changed(bytes).await?)
    }

    /// Every member's record (one listing, one read per member).
    async fn read_records(&self) -> Result<Vec<Dataset>, Failure> {
        let store = &self.records.store;
        let listed: Vec<object_store::ObjectMeta> = store
            .list(Some(&self.records.path))
            .try_collect()
            .await
            .map_err(|e| store_error(&self.records.url, e))?;
        let mut files = Vec::with_capacity(listed.len());
        for meta in listed
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(RECORD_SUFFIX))
        {
            let url = self.records.url_of(&meta.location);
            let bytes = store
                .get(&meta.location)
                .await
                .map_err(|e| store_error(&url, e))?
                .bytes()
                .await
                .map_err(|e| store_error(&url, e))?;
            let file: Dataset = postcard::from_bytes(&bytes).map_err(|e| {
                Failure::permanent(format!(
                    "{url}: not a member record of this version ({e}); ingest the file again"
                ))
            })?;
            files.push(file);
        }
        files.sort_by(|a, b| a.source_url.cmp(&b.source_url));
        Ok(files)
    }

    /// The stored state and the version a conditional put must match.
    async fn load(&self) -> Result<Option<(DatasetState, UpdateVersion)>, Failure> {
        match self.state.store.get(&self.state.path).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| store_error(&self.state.url, e))?;
                Ok(decode_state(&bytes).map(|s| (s, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.state.url, e)),
        }
    }

    /// Stores the state unless another writer stored one since `seen` was read
    /// (`Ok(false)`: read it again). Local paths are serialized by the lock file instead.
    async fn store(
        &self,
        state: &DatasetState,
        seen: Option<&UpdateVersion>,
        locked: bool,
    ) -> Result<bool, Failure> {
        let bytes = encode_state(state)?;
        let mode = match (locked, seen) {
            (true, _) => PutMode::Overwrite,
            (false, Some(v)) => PutMode::Update(v.clone()),
            (false, None) => PutMode::Create,
        };
        let put = |mode| {
            self.state.store.put_opts(
                &self.state.path,
                PutPayload::from(bytes.clone()),
                PutOptions {
                    mode,
                    ..Default::default()
                },
            )
        };
        match put(mode).await {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                tracing::warn!(
                    "{}: the store has no conditional writes; concurrent writers of this dataset may race",
                    self.state.url
                );
                put(PutMode::Overwrite)
                    .await
                    .map_err(|e| store_error(&self.state.url, e))?;
                Ok(true)
            }
            Err(e) => Err(store_error(&self.state.url, e)),
        }
    }

    /// An exclusive lock on the dataset for writers on this machine (local paths only).
    async fn lock(&self) -> Result<Option<std::fs::File>, Failure> {
        let Some(path) = self.state.local_path.clone() else {
            return Ok(None);
        };
        let lock = path.with_extension("dataset.lock");
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = lock.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock)?;
            f.lock()?;
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(std::io::Error::other)
        .flatten()
        .map(Some)
        .map_err(|e| Failure::transient(format!("locking {}: {e}", self.state.url)))
    }
}

/// Adds `files` to their dataset and rebuilds its combined references and item from
/// what is stored. Returns whether anything changed.
pub async fn rebuild(
    stages: &Stages,
    collection: &str,
    dataset_id: &str,
    files: Vec<Dataset>,
) -> Result<bool, Failure> {
    let place = DatasetPlace::new(stages.refs_root(), collection, dataset_id);
    let mut rewritten = std::collections::BTreeSet::new();
    for f in &files {
        if place.write_record(f).await? {
            rewritten.insert(f.source_url.clone());
        }
    }
    let mut files: Vec<(DatasetMember, Dataset)> = files
        .into_iter()
        .map(|f| (DatasetMember::of(&f), f))
        .collect();
    // Earliest first, so that a run of files in time order appends one after another.
    files.sort_by(|a, b| (a.0.start.as_deref(), &a.0.url).cmp(&(b.0.start.as_deref(), &b.0.url)));
    let lock = place.lock().await?;
    let locked = lock.is_some();
    loop {
        let t = std::time::Instant::now();
        let loaded = place.load().await?;
        tracing::debug!("dataset {dataset_id}: state read in {:?}", t.elapsed());
        let seen = loaded.as_ref().map(|(_, v)| v.clone());
        let (mut members, mut combination, previous_id, previous_documents) = match loaded {
            Some((s, _)) => (s.members, Some(s.combination), Some(s.item_id), s.documents),
            None => (Vec::new(), None, None, None),
        };
        let mut full = combination.is_none();
        let mut added = std::collections::HashSet::new();
        for (summary, file) in &files {
            match members.binary_search_by(|m| m.url.cmp(&summary.url)) {
                Ok(k) => {
                    if members[k] != *summary || rewritten.contains(&summary.url) {
                        members[k] = summary.clone();
                        full = true;
                    }
                }
                Err(k) => {
                    members.insert(k, summary.clone());
                    added.insert(summary.url.clone());
                    if let Some(c) = combination.as_mut().filter(|_| !full) {
                        full = !c.add(file.clone()).map_err(|e| {
                            Failure::permanent(format!("dataset {dataset_id}: {e}"))
                        })?;
                    }
                }
            }
        }
        if !full && added.is_empty() {
            return Ok(false);
        }
        let combination = match combination.filter(|_| !full) {
            Some(c) => c,
            None => {
                let all = place.read_records().await?;
                members = all.iter().map(DatasetMember::of).collect();
                tracing::debug!("dataset {dataset_id}: recombining {} files", all.len());
                Combination::new(all)
                    .map_err(|e| Failure::permanent(format!("dataset {dataset_id}: {e}")))?
            }
        };
        tracing::debug!("dataset {dataset_id}: combined in {:?}", t.elapsed());
        let item_id = dataset_item_id(dataset_id, &members);
        let previous = Previous {
            item_id: previous_id,
            documents: previous_documents,
            only_added: !full,
            added,
        };
        let (changed, documents) =
            publish(stages, &place, &members, &combination, &item_id, previous).await?;
        let state = DatasetState {
            format: STATE_FORMAT,
            members,
            combination,
            item_id,
            documents,
        };
        tracing::debug!("dataset {dataset_id}: published in {:?}", t.elapsed());
        if place.store(&state, seen.as_ref(), locked).await? {
            tracing::debug!("dataset {dataset_id}: state stored in {:?}", t.elapsed());
            drop(lock);
            return Ok(changed);
        }
        tracing::debug!(
            "dataset {dataset_id}: another writer stored its state first; rebuilding on top of it"
        );
    }
}

/// Writes the combined references and the dataset's item; removes the item published
/// before under another id (the dataset's version moved).
async fn publish(
    stages: &Stages,
    place: &DatasetPlace,
    members: &[DatasetMember],
    combination: &Combination,
    item_id: &str,
    previous: Previous,
) -> Result<(bool, Option<usize>), Failure> {
    let collection = &place.collection;
    let t = std::time::Instant::now();
    let mut changed = stages
        .write_refs(combination.dataset(), collection, item_id)
        .await?;
    tracing::debug!(
        "dataset {}: references written in {:?}",
        place.dataset_id,
        t.elapsed()
    );
    let sink = stages.catalog();
    let opts = ItemOptions {
        collection: Some(collection.clone()),
        refs_href: Some(stages.refs_location(collection, item_id).url),
        store_style: stages.style().clone(),
        source_modified: None,
        max_item_assets: sink
            .holds_asset_documents()
            .then_some(stages.config.stac.max_item_assets),
    };
    let combined = combination.dataset();
    let mut item = item_for_dataset(&place.dataset_id, members, combined, &opts)
        .map_err(|e| Failure::permanent(format!("dataset {}: {e}", place.dataset_id)))?;
    let mut mark = None;
    if !keeps_file_assets(members, &opts) {
        let ordered = in_document_order(members);
        // When members were only added under the same item, the documents before the
        // first added one are those written last time (a document depends on its file
        // and on the item's id, collection and grid, which adding cannot change).
        let unchanged = match &previous.documents {
            Some(count)
                if previous.only_added
                    && previous.item_id.as_deref() == Some(item_id)
                    && count + previous.added.len() == ordered.len() =>
            {
                ordered
                    .iter()
                    .position(|m| previous.added.contains(&m.url))
                    .unwrap_or(ordered.len())
            }
            _ => 0,
        };
        let documents = |from: usize| AssetDocuments {
            unchanged: from,
            tail: ordered[from..]
                .iter()
                .map(|m| asset_document(&item, m, combined))
                .collect(),
        };
        let mut stored = sink
            .put_asset_documents(collection, item_id, documents(unchanged))
            .await?;
        if stored.is_none() && unchanged > 0 {
            stored = sink
                .put_asset_documents(collection, item_id, documents(0))
                .await?;
        }
        let (link, written) = stored.ok_or_else(|| {
            Failure::permanent(format!(
                "catalog {} did not take the asset documents of {item_id}",
                sink.url()
            ))
        })?;
        changed |= written;
        if let Some(links) = item["links"].as_array_mut() {
            links.push(link);
        }
        mark = Some(ordered.len());
    }
    tracing::debug!(
        "dataset {}: item built in {:?}",
        place.dataset_id,
        t.elapsed()
    );
    changed |= stages.publish(item).await?;
    if let Some(old) = previous.item_id.filter(|old| old != item_id) {
        stages.catalog().delete_item(collection, &old).await?;
        let old_refs = stages.refs_location(collection, &old);
        let _ = old_refs.store.delete(&old_refs.path).await;
        changed = true;
    }
    Ok((changed, mark))
}

/// Rebuilds coalesced per dataset: at most one in flight for a dataset; files arriving
/// meanwhile fold into the next one. Each caller learns the outcome of the rebuild that
/// included its file.
#[derive(Default)]
pub struct Rebuilds {
    slots: parking_lot::Mutex<HashMap<(String, String), Arc<Slot>>>,
}

type Waiting = (Dataset, oneshot::Sender<Result<bool, Failure>>);

#[derive(Default)]
struct Slot {
    pending: parking_lot::Mutex<Vec<Waiting>>,
    running: tokio::sync::Mutex<()>,
}

impl Rebuilds {
    /// Adds a file to its dataset; returns once a rebuild holding it has written the
    /// dataset's item (whether anything changed).
    pub async fn add(&self, stages: &Stages, member: MemberFile) -> Result<bool, Failure> {
        let key = (member.collection.clone(), member.dataset_id.clone());
        let slot = self.slots.lock().entry(key.clone()).or_default().clone();
        let (tx, mut rx) = oneshot::channel();
        slot.pending.lock().push((member.dataset, tx));
        // Served by the rebuild another caller runs, or run the next rebuild, with every
        // file waiting by then. A caller whose file was taken in stops waiting for the
        // turn, so that the turn goes to one whose file still waits.
        let result = tokio::select! {
            biased;
            served = &mut rx => served,
            running = slot.running.lock() => {
                let batch = std::mem::take(&mut *slot.pending.lock());
                if !batch.is_empty() {
                    let (files, waiting): (Vec<Dataset>, Vec<_>) = batch.into_iter().unzip();
                    tracing::debug!("dataset {}: rebuilding with {} new files", key.1, files.len());
                    let result = rebuild(stages, &key.0, &key.1, files).await;
                    for tx in waiting {
                        let _ = tx.send(result.clone());
                    }
                }
                drop(running);
                rx.await
            }
        };
        let changed = result
            .unwrap_or_else(|_| Err(Failure::transient("the dataset rebuild was abandoned")))?;
        Ok(changed || member.refs_changed)
    }
}
