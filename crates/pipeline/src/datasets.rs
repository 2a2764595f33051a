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
use zarrstac_stac::cmip6::Declaration;
use zarrstac_stac::netcdf::{
    DatasetMember, asset_document, dataset_item_id, in_document_order, item_for_dataset,
    keeps_file_assets,
};

use crate::failure::Failure;
use crate::stages::{DatasetPublication, MemberFile, Stages};

/// Bumped when the stored layout changes; older states are rebuilt from the records.
const STATE_FORMAT: u32 = 7;
const STATE_MAGIC: &[u8; 8] = b"ZSTDSET\0";
const RECORD_SUFFIX: &str = ".member";
/// Leads every member record, with the layout's number: a record of another layout is
/// refused by name, never decoded into something else.
const RECORD_MAGIC: &[u8; 8] = b"ZSTMEMB\0";
const RECORD_FORMAT: u32 = 3;

/// Stored as a [`StateHeader`] and two sections, see [`encode_state`].
struct DatasetState {
    /// The files' summaries, sorted by URL.
    members: Vec<DatasetMember>,
    combination: Combination,
    /// The id the dataset's item was last published under.
    item_id: String,
    /// How many asset documents the catalog holds for that item, when it holds them.
    /// A list that only gained documents is resent from the first new one on.
    documents: Option<usize>,
    /// What requests said of the dataset (its PID, whether it was retracted).
    publication: DatasetPublication,
}

/// The members stored column by column, their strings front-coded: neighbours in URL
/// order share most of their URL, file name and dates, so the state of a dataset of
/// many files is a fraction of its plain size.
mod member_columns {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use zarrstac_model::front_coded::{optional_strings, strings};
    use zarrstac_stac::netcdf::DatasetMember;

    #[derive(Serialize)]
    struct Columns<'a> {
        #[serde(serialize_with = "strings::serialize")]
        urls: Vec<&'a str>,
        #[serde(serialize_with = "strings::serialize")]
        asset_keys: Vec<&'a str>,
        sizes: Vec<u64>,
        #[serde(serialize_with = "optional_strings::serialize")]
        starts: Vec<Option<&'a str>>,
        #[serde(serialize_with = "optional_strings::serialize")]
        ends: Vec<Option<&'a str>>,
        #[serde(serialize_with = "optional_strings::serialize")]
        tracking_ids: Vec<Option<&'a str>>,
        #[serde(serialize_with = "optional_strings::serialize")]
        versions: Vec<Option<&'a str>>,
        #[serde(serialize_with = "optional_strings::serialize")]
        creation_dates: Vec<Option<&'a str>>,
    }

    #[derive(Deserialize)]
    struct StoredColumns {
        #[serde(deserialize_with = "strings::deserialize")]
        urls: Vec<String>,
        #[serde(deserialize_with = "strings::deserialize")]
        asset_keys: Vec<String>,
        sizes: Vec<u64>,
        #[serde(deserialize_with = "optional_strings::deserialize")]
        starts: Vec<Option<String>>,
        #[serde(deserialize_with = "optional_strings::deserialize")]
        ends: Vec<Option<String>>,
        #[serde(deserialize_with = "optional_strings::deserialize")]
        tracking_ids: Vec<Option<String>>,
        #[serde(deserialize_with = "optional_strings::deserialize")]
        versions: Vec<Option<String>>,
        #[serde(deserialize_with = "optional_strings::deserialize")]
        creation_dates: Vec<Option<String>>,
    }

    pub fn serialize<S: Serializer>(members: &[DatasetMember], s: S) -> Result<S::Ok, S::Error> {
        let text = |f: fn(&DatasetMember) -> &str| members.iter().map(f).collect();
        let optional = |f: fn(&DatasetMember) -> &Option<String>| {
            members.iter().map(|m| f(m).as_deref()).collect()
        };
        Columns {
            urls: text(|m| &m.url),
            asset_keys: text(|m| &m.asset_key),
            sizes: members.iter().map(|m| m.size).collect(),
            starts: optional(|m| &m.start),
            ends: optional(|m| &m.end),
            tracking_ids: optional(|m| &m.tracking_id),
            versions: optional(|m| &m.version),
            creation_dates: optional(|m| &m.creation_date),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DatasetMember>, D::Error> {
        let c = StoredColumns::deserialize(d)?;
        let n = c.urls.len();
        let lengths = [
            c.asset_keys.len(),
            c.sizes.len(),
            c.starts.len(),
            c.ends.len(),
            c.tracking_ids.len(),
            c.versions.len(),
            c.creation_dates.len(),
        ];
        if lengths.iter().any(|&l| l != n) {
            return Err(serde::de::Error::custom(format!(
                "member columns of different lengths: {n} URLs, {lengths:?}"
            )));
        }
        let mut cols = (
            c.asset_keys.into_iter(),
            c.sizes.into_iter(),
            c.starts.into_iter(),
            c.ends.into_iter(),
            c.tracking_ids.into_iter(),
            c.versions.into_iter(),
            c.creation_dates.into_iter(),
        );
        Ok(c.urls
            .into_iter()
            .filter_map(|url| {
                Some(DatasetMember {
                    url,
                    asset_key: cols.0.next()?,
                    size: cols.1.next()?,
                    start: cols.2.next()?,
                    end: cols.3.next()?,
                    tracking_id: cols.4.next()?,
                    version: cols.5.next()?,
                    creation_date: cols.6.next()?,
                })
            })
            .collect())
    }
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

/// The stored state's parts before its two big sections (the members, then the
/// combination), which are encoded and decoded on two threads at once.
#[derive(Serialize, Deserialize)]
struct StateHeader {
    format: u32,
    item_id: String,
    documents: Option<usize>,
    publication: DatasetPublication,
    /// The length of the members' section; the combination's runs to the end.
    members_len: u64,
}

#[derive(Serialize)]
struct MembersOut<'a>(#[serde(with = "member_columns")] &'a [DatasetMember]);

#[derive(Deserialize)]
struct MembersIn(#[serde(with = "member_columns")] Vec<DatasetMember>);

fn encode_error(e: impl std::fmt::Display) -> Failure {
    Failure::permanent(format!("encoding dataset state: {e}"))
}

/// Encodes the state on blocking threads, the members beside the combination, as the
/// parts of one payload (not copied into one buffer); `capacity`: the size of the state
/// read before (a state grows by little per rebuild).
async fn encode_state(state: Arc<DatasetState>, capacity: usize) -> Result<PutPayload, Failure> {
    type Write = fn(&DatasetState, &mut Vec<u8>) -> postcard::Result<()>;
    let section = |capacity: usize, write: Write| {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(capacity);
            write(&state, &mut out).map_err(encode_error)?;
            Ok::<_, Failure>(out)
        })
    };
    let members = section(capacity / 2 + 4096, |s, out| {
        postcard::to_io(&MembersOut(&s.members), out).map(drop)
    });
    let combination = section(capacity + capacity / 8 + 4096, |s, out| {
        postcard::to_io(&s.combination, out).map(drop)
    });
    let members = members.await.map_err(encode_error)??;
    let combination = combination.await.map_err(encode_error)??;
    let header = StateHeader {
        format: STATE_FORMAT,
        item_id: state.item_id.clone(),
        documents: state.documents,
        publication: state.publication.clone(),
        members_len: members.len() as u64,
    };
    let mut head = STATE_MAGIC.to_vec();
    postcard::to_io(&header, &mut head).map_err(encode_error)?;
    Ok(PutPayload::from_iter([
        bytes::Bytes::from(head),
        bytes::Bytes::from(members),
        bytes::Bytes::from(combination),
    ]))
}

/// The stored state, decoded on blocking threads (the members beside the
/// combination); `None` for a state of another layout or a damaged one, which is
/// rebuilt from the member records.
async fn decode_state(bytes: bytes::Bytes) -> Option<DatasetState> {
    let body = bytes.strip_prefix(STATE_MAGIC)?;
    let (header, rest) = postcard::take_from_bytes::<StateHeader>(body).ok()?;
    if header.format != STATE_FORMAT {
        return None;
    }
    let split = usize::try_from(header.members_len).ok()?;
    if split > rest.len() {
        return None;
    }
    let start = bytes.len() - rest.len();
    let members = bytes.slice(start..start + split);
    let combination = bytes.slice(start + split..);
    let members =
        tokio::task::spawn_blocking(move || postcard::from_bytes::<MembersIn>(&members).ok());
    let combination =
        tokio::task::spawn_blocking(move || postcard::from_bytes::<Combination>(&combination).ok());
    let (members, combination) = (members.await.ok()??, combination.await.ok()??);
    Some(DatasetState {
        members: members.0,
        combination,
        item_id: header.item_id,
        documents: header.documents,
        publication: header.publication,
    })
}

/// A member record's file metadata, or why it is not a record of this layout.
fn decode_record(bytes: &[u8]) -> Result<Dataset, String> {
    let body = bytes
        .strip_prefix(RECORD_MAGIC)
        .ok_or("not a member record of this version of zarrstac")?;
    let (format, body) = body
        .split_first_chunk::<4>()
        .ok_or("a truncated member record")?;
    let format = u32::from_le_bytes(*format);
    if format != RECORD_FORMAT {
        return Err(format!(
            "a member record of layout {format}, this version reads layout {RECORD_FORMAT}"
        ));
    }
    postcard::from_bytes(body).map_err(|e| format!("a damaged member record ({e})"))
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
        let mut bytes = RECORD_MAGIC.to_vec();
        bytes.extend_from_slice(&RECORD_FORMAT.to_le_bytes());
        postcard::to_io(file, &mut bytes)
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
            files.push(
                decode_record(&bytes).map_err(|e| {
                    Failure::permanent(format!("{url}: {e}; ingest the file again"))
                })?,
            );
        }
        files.sort_by(|a, b| a.source_url.cmp(&b.source_url));
        Ok(files)
    }

    /// The stored state, the version a conditional put must match and its size. A state
    /// `cached` from this process's last rebuild is used when the store says it is still
    /// the stored one (a conditional get), and is not read again.
    async fn load(&self, cached: Option<Cached>) -> Result<Option<Loaded>, Failure> {
        let options = object_store::GetOptions {
            if_none_match: cached.as_ref().and_then(|c| c.1.e_tag.clone()),
            ..Default::default()
        };
        match self.state.store.get_opts(&self.state.path, options).await {
            Err(object_store::Error::NotModified { .. }) => Ok(cached),
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| store_error(&self.state.url, e))?;
                let size = bytes.len();
                Ok(decode_state(bytes).await.map(|s| (s, version, size)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(&self.state.url, e)),
        }
    }

    /// Stores the state unless another writer stored one since `seen` was read
    /// (`Ok(None)`: read it again); the version and size stored. Local paths are serialized by the lock file instead.
    async fn store(
        &self,
        payload: PutPayload,
        seen: Option<&UpdateVersion>,
        locked: bool,
    ) -> Result<Option<(UpdateVersion, usize)>, Failure> {
        let size = payload.content_length();
        let mode = match (locked, seen) {
            (true, _) => PutMode::Overwrite,
            (false, Some(v)) => PutMode::Update(v.clone()),
            (false, None) => PutMode::Create,
        };
        let put = |mode| {
            self.state.store.put_opts(
                &self.state.path,
                payload.clone(),
                PutOptions {
                    mode,
                    ..Default::default()
                },
            )
        };
        let stored = |r: object_store::PutResult| {
            Some((
                UpdateVersion {
                    e_tag: r.e_tag,
                    version: r.version,
                },
                size,
            ))
        };
        match put(mode).await {
            Ok(r) => Ok(stored(r)),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => Ok(None),
            Err(object_store::Error::NotImplemented { .. }) => {
                tracing::warn!(
                    "{}: the store has no conditional writes; concurrent writers of this dataset may race",
                    self.state.url
                );
                let r = put(PutMode::Overwrite)
                    .await
                    .map_err(|e| store_error(&self.state.url, e))?;
                Ok(stored(r))
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

/// A stored state as read: the state, the version it was stored under and its size.
type Loaded = (DatasetState, UpdateVersion, usize);
type Cached = Loaded;

/// The states this process stored last, so that a long-running worker rebuilding one
/// dataset again and again reads its state again only when another writer changed it.
/// Bounded by the states' stored sizes; the least recently stored go first.
#[derive(Default)]
struct StateCache {
    entries: parking_lot::Mutex<StateEntries>,
}

#[derive(Default)]
struct StateEntries {
    by_dataset: HashMap<(String, String), (u64, Cached)>,
    bytes: usize,
    stamp: u64,
}

/// What the cached states may take, counted in stored bytes (decoded, a few times more).
const STATE_CACHE_BYTES: usize = 64 << 20;

impl StateCache {
    fn take(&self, key: &(String, String)) -> Option<Cached> {
        let mut e = self.entries.lock();
        let (_, cached) = e.by_dataset.remove(key)?;
        e.bytes -= cached.2;
        Some(cached)
    }

    fn put(&self, key: (String, String), cached: Cached) {
        if cached.1.e_tag.is_none() || cached.2 > STATE_CACHE_BYTES {
            return;
        }
        let mut e = self.entries.lock();
        e.stamp += 1;
        e.bytes += cached.2;
        let stamp = e.stamp;
        if let Some((_, old)) = e.by_dataset.insert(key, (stamp, cached)) {
            e.bytes -= old.2;
        }
        while e.bytes > STATE_CACHE_BYTES {
            let Some(oldest) = e
                .by_dataset
                .iter()
                .min_by_key(|(_, (stamp, _))| *stamp)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, old)) = e.by_dataset.remove(&oldest) {
                e.bytes -= old.2;
            }
        }
    }
}

/// Adds `files` to their dataset and rebuilds its combined references and item from
/// what is stored. Returns whether anything changed.
async fn rebuild(
    stages: &Stages,
    states: &StateCache,
    collection: &str,
    dataset_id: &str,
    files: Vec<Dataset>,
    publication: &DatasetPublication,
) -> Result<bool, Failure> {
    let key = (collection.to_string(), dataset_id.to_string());
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
    // Ids this rebuild published under before another writer stored its state first.
    let mut abandoned = std::collections::BTreeSet::<String>::new();
    loop {
        let t = std::time::Instant::now();
        let loaded = place.load(states.take(&key)).await?;
        tracing::debug!("dataset {dataset_id}: state read in {:?}", t.elapsed());
        let seen = loaded.as_ref().map(|(_, v, _)| v.clone());
        let size_before = loaded.as_ref().map_or(0, |(_, _, n)| *n);
        let (mut members, mut combination, previous_id, previous_documents, stored_publication) =
            match loaded {
                Some((s, _, _)) => (
                    s.members,
                    Some(s.combination),
                    Some(s.item_id),
                    s.documents,
                    s.publication,
                ),
                None => (Vec::new(), None, None, None, DatasetPublication::default()),
            };
        let publication_now = stored_publication.updated_by(publication);
        let mut full = combination.is_none();
        let mut added = std::collections::HashSet::new();
        let mut new_files = Vec::new();
        let mut new_members = Vec::new();
        for (summary, file) in &files {
            match members.binary_search_by(|m| m.url.cmp(&summary.url)) {
                Ok(k) => {
                    if members[k] != *summary || rewritten.contains(&summary.url) {
                        members[k] = summary.clone();
                        full = true;
                    }
                }
                Err(_) => {
                    if added.insert(summary.url.clone()) {
                        new_members.push(summary.clone());
                        new_files.push(file.clone());
                    } else {
                        // The same file twice in one rebuild: its record holds the last.
                        full = true;
                    }
                }
            }
        }
        if !new_members.is_empty() {
            new_members.sort_by(|a, b| a.url.cmp(&b.url));
            members = merge_by_url(members, new_members);
        }
        // All new files placed in one pass, wherever their times put them.
        if let Some(c) = combination
            .as_mut()
            .filter(|_| !full && !new_files.is_empty())
        {
            full = !c
                .add_all(new_files)
                .map_err(|e| Failure::permanent(format!("dataset {dataset_id}: {e}")))?;
        }
        if !full && added.is_empty() && publication_now == stored_publication {
            if let (Some(combination), Some(item_id), Some(seen)) = (combination, previous_id, seen)
            {
                let state = DatasetState {
                    members,
                    combination,
                    item_id,
                    documents: previous_documents,
                    publication: stored_publication,
                };
                states.put(key, (state, seen, size_before));
            }
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
        let documents = (!keeps_file_assets(&members, &item_options(stages, collection, &item_id)))
            .then_some(members.len());
        let state = Arc::new(DatasetState {
            members,
            combination,
            item_id,
            documents,
            publication: publication_now,
        });
        // The state is encoded on another thread while the outputs are written; it is
        // stored only after them.
        let encoding = tokio::spawn(encode_state(state.clone(), size_before));
        let changed = publish(stages, &place, &state, previous).await;
        let bytes = encoding.await.map_err(encode_error)??;
        let changed = changed?;
        tracing::debug!("dataset {dataset_id}: published in {:?}", t.elapsed());
        if let Some((version, size)) = place.store(bytes, seen.as_ref(), locked).await? {
            tracing::debug!("dataset {dataset_id}: state stored in {:?}", t.elapsed());
            drop(lock);
            // Items published by attempts that lost the race, under an id the dataset
            // no longer has, go (the winner's own old id went in `publish`).
            for id in abandoned.iter().filter(|id| **id != state.item_id) {
                remove_item(stages, collection, id).await?;
            }
            if let Ok(state) = Arc::try_unwrap(state) {
                states.put(key, (state, version, size));
            }
            return Ok(changed);
        }
        abandoned.insert(state.item_id.clone());
        tracing::debug!(
            "dataset {dataset_id}: another writer stored its state first; rebuilding on top of it"
        );
    }
}

/// Two member lists sorted by URL, as one.
fn merge_by_url(mut a: Vec<DatasetMember>, b: Vec<DatasetMember>) -> Vec<DatasetMember> {
    // A few new members (the usual arrival) are inserted: shifting the members after
    // each costs less than moving every member into a new list.
    if b.len() <= 16 {
        for m in b {
            let k = a.partition_point(|x| x.url <= m.url);
            a.insert(k, m);
        }
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.url <= y.url,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if take_a { a.next() } else { b.next() });
    }
    out
}

/// Writes the combined references and the dataset's item; removes the item published
/// before under another id (the dataset's version moved).
async fn publish(
    stages: &Stages,
    place: &DatasetPlace,
    state: &Arc<DatasetState>,
    previous: Previous,
) -> Result<bool, Failure> {
    let collection = &place.collection;
    let (members, item_id) = (&state.members, state.item_id.as_str());
    let t = std::time::Instant::now();
    // The combined references (megabytes for a big dataset) are encoded on another
    // thread while the item is built; written before the item, which points at them.
    let references = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            zarrstac_refs::kerchunk_bytes(state.combination.dataset())
                .map_err(|e| Failure::permanent(e.to_string()))
        })
    };
    let sink = stages.catalog();
    let opts = item_options(stages, collection, item_id);
    let combined = state.combination.dataset();
    let mut item = item_for_dataset(item_id, members, combined, &opts)
        .map_err(|e| Failure::permanent(format!("dataset {}: {e}", place.dataset_id)))?;
    let publication = crate::pid_table::publication(
        item_id,
        &state.publication,
        stages.pid_table().await?,
        &stages.config.datasets,
    );
    if let Declaration::Undeclared(reason) = zarrstac_stac::cmip6::declare(
        &mut item,
        members,
        combined,
        &publication,
        stages.validator(),
    ) {
        stages.report_undeclared(item_id, &reason);
    }
    let mut changed = false;
    if state.documents.is_some() {
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
                // Where the earliest added one sits: each found by URL (members are sorted
                // so), then by its key in document order.
                fn key(m: &DatasetMember) -> (Option<&str>, &str) {
                    (m.start.as_deref(), m.asset_key.as_str())
                }
                previous
                    .added
                    .iter()
                    .filter_map(|url| {
                        let k = members.binary_search_by(|m| m.url.as_str().cmp(url)).ok()?;
                        Some(ordered.partition_point(|o| key(o) < key(&members[k])))
                    })
                    .min()
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
    }
    tracing::debug!(
        "dataset {}: item built in {:?}",
        place.dataset_id,
        t.elapsed()
    );
    let references = references
        .await
        .map_err(|e| Failure::permanent(format!("encoding references of {item_id}: {e}")))??;
    changed |= stages.put_refs(references, collection, item_id).await?;
    tracing::debug!(
        "dataset {}: references written in {:?}",
        place.dataset_id,
        t.elapsed()
    );
    changed |= stages.publish(item).await?;
    if let Some(old) = previous.item_id.filter(|old| old != item_id) {
        remove_item(stages, collection, &old).await?;
        changed = true;
    }
    Ok(changed)
}

/// Removes an item the dataset no longer has, and its combined references.
async fn remove_item(stages: &Stages, collection: &str, id: &str) -> Result<(), Failure> {
    stages.catalog().delete_item(collection, id).await?;
    let refs = stages.refs_location(collection, id);
    let _ = refs.store.delete(&refs.path).await;
    Ok(())
}

/// How a dataset's item is built: in its collection, pointing at its references; with
/// its files as asset documents beyond `stac.max_item_assets` where the catalog holds them.
fn item_options(stages: &Stages, collection: &str, item_id: &str) -> ItemOptions {
    ItemOptions {
        collection: Some(collection.to_string()),
        refs_href: Some(stages.refs_location(collection, item_id).url),
        store_style: stages.style().clone(),
        source_modified: None,
        max_item_assets: stages
            .catalog()
            .holds_asset_documents()
            .then_some(stages.config.stac.max_item_assets),
    }
}

/// Rebuilds coalesced per dataset: at most one in flight for a dataset; files arriving
/// meanwhile fold into the next one. Each caller learns the outcome of the rebuild that
/// included its file.
#[derive(Default)]
pub struct Rebuilds {
    slots: parking_lot::Mutex<HashMap<(String, String), Arc<Slot>>>,
    states: StateCache,
}

type Waiting = (
    Dataset,
    DatasetPublication,
    oneshot::Sender<Result<bool, Failure>>,
);

#[derive(Default)]
struct Slot {
    pending: parking_lot::Mutex<Vec<Waiting>>,
    running: tokio::sync::Mutex<()>,
}

impl Rebuilds {
    /// Adds `files` to their dataset now (no coalescing: a batch brings all its files at
    /// once) and rebuilds its combined references and item. Whether anything changed.
    pub async fn rebuild(
        &self,
        stages: &Stages,
        collection: &str,
        dataset_id: &str,
        files: Vec<Dataset>,
        publication: &DatasetPublication,
    ) -> Result<bool, Failure> {
        rebuild(
            stages,
            &self.states,
            collection,
            dataset_id,
            files,
            publication,
        )
        .await
    }

    /// Adds a file to its dataset; returns once a rebuild holding it has written the
    /// dataset's item (whether anything changed).
    pub async fn add(&self, stages: &Stages, member: MemberFile) -> Result<bool, Failure> {
        let key = (member.collection.clone(), member.dataset_id.clone());
        let slot = self.slots.lock().entry(key.clone()).or_default().clone();
        let (tx, mut rx) = oneshot::channel();
        slot.pending
            .lock()
            .push((member.dataset, member.publication, tx));
        // Served by the rebuild another caller runs, or run the next rebuild, with every
        // file waiting by then. A caller whose file was taken in stops waiting for the
        // turn, so that the turn goes to one whose file still waits.
        let result = tokio::select! {
            biased;
            served = &mut rx => served,
            running = slot.running.lock() => {
                let batch = std::mem::take(&mut *slot.pending.lock());
                if !batch.is_empty() {
                    let publication = DatasetPublication::of_all(batch.iter().map(|(_, said, _)| said));
                    let (files, waiting): (Vec<Dataset>, Vec<_>) =
                        batch.into_iter().map(|(file, _, tx)| (file, tx)).unzip();
                    tracing::debug!("dataset {}: rebuilding with {} new files", key.1, files.len());
                    let result = self.rebuild(stages, &key.0, &key.1, files, &publication).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use zarrstac_model::{Group, SourceFormat};

    fn record_of(file: &Dataset) -> Vec<u8> {
        let mut bytes = RECORD_MAGIC.to_vec();
        bytes.extend_from_slice(&RECORD_FORMAT.to_le_bytes());
        postcard::to_io(file, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn member_records_of_another_layout_are_refused_by_name() {
        let file = Dataset {
            source_url: "file:///d/tas_185001.nc".into(),
            source_size: 27_125,
            format: SourceFormat::NetCdf4,
            root: Group::new(""),
            refused: Vec::new(),
        };
        let read = decode_record(&record_of(&file)).unwrap();
        assert_eq!(
            (read.source_url, read.source_size),
            (file.source_url.clone(), 27_125)
        );
        // A record of the earlier, unmarked layout.
        let plain = postcard::to_stdvec(&file).unwrap();
        let e = decode_record(&plain).unwrap_err();
        assert!(e.contains("not a member record of this version"), "{e}");
        // Another layout number, a truncated and a damaged record.
        let mut other = record_of(&file);
        other[8] = 9;
        assert!(decode_record(&other).unwrap_err().contains("layout 9"));
        assert!(
            decode_record(&RECORD_MAGIC[..])
                .unwrap_err()
                .contains("truncated")
        );
        let mut damaged = record_of(&file);
        damaged.truncate(15);
        assert!(decode_record(&damaged).unwrap_err().contains("damaged"));
    }
}
