use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use zarrstac_io::Location;

use crate::collection::{CollectionExtent, STAC_VERSION};
use crate::{AssetDocuments, CatalogError, CatalogSink, ItemOutcome};

/// Whether a write changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Written,
    Unchanged,
}

/// A static STAC catalog rooted at a directory or object-store prefix.
pub struct StaticCatalog {
    root: Location,
    id: String,
    description: String,
    /// Items with more assets than this also get them as paged asset documents.
    asset_page_size: usize,
}

/// Default page size of asset documents: items with more assets than this (datasets of
/// thousands of files) also publish them in pages clients can fetch one at a time.
pub const DEFAULT_ASSET_PAGE_SIZE: usize = 100;

fn pretty(doc: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// One asset document of a page: its JSON text as written (compact), and the time span
/// the page index needs. Documents carried from a stored page are copied as text, not
/// parsed into values and printed again.
struct PageDocument {
    text: Box<RawValue>,
    start: Option<String>,
    end: Option<String>,
}

impl PageDocument {
    fn of(doc: &Value) -> Result<Self, CatalogError> {
        let time = |key: &str| doc["properties"][key].as_str().map(str::to_string);
        Ok(PageDocument {
            text: serde_json::value::to_raw_value(doc).map_err(|e| CatalogError::Invalid {
                url: "asset document".into(),
                reason: e.to_string(),
            })?,
            start: time("start_datetime"),
            end: time("end_datetime"),
        })
    }

    fn read(text: Box<RawValue>) -> Result<Self, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Times {
            #[serde(default)]
            start_datetime: Option<String>,
            #[serde(default)]
            end_datetime: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Document {
            #[serde(default)]
            properties: Option<Times>,
        }
        let properties = serde_json::from_str::<Document>(text.get())?.properties;
        // A page printed with indentation (by an earlier version) is written compact
        // again, so that a page's bytes do not depend on how it was reached.
        let text = if text.get().contains('\n') {
            serde_json::value::to_raw_value(&serde_json::from_str::<Value>(text.get())?)?
        } else {
            text
        };
        let (start, end) = properties.map_or((None, None), |t| (t.start_datetime, t.end_datetime));
        Ok(PageDocument { text, start, end })
    }
}

/// An asset page: a FeatureCollection of `documents`, compact, one line.
fn page_bytes(documents: &[PageDocument], links: &[Value]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Page<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(rename = "numberReturned")]
        number_returned: usize,
        features: Vec<&'a RawValue>,
        links: &'a [Value],
    }
    let page = Page {
        kind: "FeatureCollection",
        number_returned: documents.len(),
        features: documents.iter().map(|d| &*d.text).collect(),
        links,
    };
    let mut out = serde_json::to_vec(&page).unwrap_or_default();
    out.push(b'\n');
    out
}

impl StaticCatalog {
    pub fn new(root: Location) -> Self {
        StaticCatalog {
            root,
            id: "zarrstac".into(),
            description: "Datasets ingested by zarrstac: virtual Zarr references with CF-mapped datacube metadata".into(),
            asset_page_size: DEFAULT_ASSET_PAGE_SIZE,
        }
    }

    /// Sets how many assets an item may have before they are also paged out.
    pub fn with_asset_page_size(mut self, size: usize) -> Self {
        self.asset_page_size = size.max(1);
        self
    }

    pub fn root(&self) -> &Location {
        &self.root
    }

    fn store_err(url: &str) -> impl FnOnce(object_store::Error) -> CatalogError + '_ {
        move |source| CatalogError::Store {
            url: url.to_string(),
            source,
        }
    }

    /// Writes `bytes` at `rel` unless the same bytes are there already.
    async fn put_if_changed(
        &self,
        rel: &str,
        bytes: Vec<u8>,
    ) -> Result<WriteOutcome, CatalogError> {
        let written = self.root.join(rel).put_if_changed(bytes).await?;
        Ok(if written {
            WriteOutcome::Written
        } else {
            WriteOutcome::Unchanged
        })
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        rel: &str,
    ) -> Result<Option<T>, CatalogError> {
        let loc = self.root.join(rel);
        match loc.store.get(&loc.path).await {
            Ok(r) => {
                let b = r.bytes().await.map_err(Self::store_err(&loc.url))?;
                serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| CatalogError::Invalid {
                        url: loc.url.clone(),
                        reason: e.to_string(),
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::store_err(&loc.url)(e)),
        }
    }

    /// The documents of a stored asset page, as written; `None` when there is none.
    async fn read_page(&self, rel: &str) -> Result<Option<Vec<PageDocument>>, CatalogError> {
        #[derive(serde::Deserialize)]
        struct StoredPage {
            features: Vec<Box<RawValue>>,
        }
        let Some(page) = self.read_json::<StoredPage>(rel).await? else {
            return Ok(None);
        };
        page.features
            .into_iter()
            .map(PageDocument::read)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|e| CatalogError::Invalid {
                url: self.root.join(rel).url,
                reason: e.to_string(),
            })
    }

    /// Path of an item relative to the catalog root.
    pub fn item_path(collection: &str, id: &str) -> String {
        format!("{collection}/{id}/{id}.json")
    }

    /// Sets an item's links to its place in a static catalog (root, parent, collection),
    /// keeping its other links. Items must carry a collection link to be valid STAC.
    pub fn link_item(item: &mut Value) {
        let mut links = crate::links_outside_catalog(item);
        links
            .push(json!({"rel": "root", "href": "../../catalog.json", "type": "application/json"}));
        links.push(
            json!({"rel": "parent", "href": "../collection.json", "type": "application/json"}),
        );
        links.push(
            json!({"rel": "collection", "href": "../collection.json", "type": "application/json"}),
        );
        item["links"] = Value::Array(links);
    }

    /// Writes one item (with its catalog links set) into its collection.
    pub async fn write_item(&self, mut item: Value) -> Result<WriteOutcome, CatalogError> {
        let id = item["id"]
            .as_str()
            .ok_or(CatalogError::MissingField("id"))?
            .to_string();
        let collection = item["collection"]
            .as_str()
            .ok_or(CatalogError::MissingField("collection"))?
            .to_string();
        Self::link_item(&mut item);
        let mut outcome = WriteOutcome::Unchanged;
        if self
            .put_if_changed(&Self::item_path(&collection, &id), pretty(&item))
            .await?
            == WriteOutcome::Written
        {
            outcome = WriteOutcome::Written;
        }
        Ok(outcome)
    }

    /// Writes an item's asset documents as pages (FeatureCollections of `asset_page_size`
    /// documents, in the order given: by time) under `<item dir>/assets/`, and an index
    /// naming each page's time range and a digest of its bytes, so that a client finds a
    /// window without reading every page. Of a list that grew at its end only the pages
    /// from the first new document on are built and written. Pages beyond the last are
    /// removed. `None`: only a tail was given and the stored pages cannot complete it.
    pub async fn write_asset_documents(
        &self,
        collection: &str,
        id: &str,
        documents: AssetDocuments,
    ) -> Result<Option<WriteOutcome>, CatalogError> {
        let mut outcome = WriteOutcome::Unchanged;
        let per_page = self.asset_page_size.max(1);
        let assets = format!("{collection}/{id}/assets");
        let index_rel = format!("{assets}/index.json");
        let old_index = self.read_json::<Value>(&index_rel).await.ok().flatten();
        let old_pages: Vec<Value> = old_index
            .as_ref()
            .and_then(|i| i["pages"].as_array().cloned())
            .unwrap_or_default();
        let total = documents.len();
        // From the page of the last unchanged document: its neighbour links may change.
        let first_page = documents.unchanged.saturating_sub(1) / per_page;
        // The documents of the first page to build that were sent before, as written.
        let mut carried: Vec<PageDocument> = Vec::new();
        if documents.unchanged > 0 {
            let same_layout = old_index.as_ref().is_some_and(|i| {
                i["page_size"].as_u64() == Some(per_page as u64)
                    && i["numberMatched"].as_u64() >= Some(documents.unchanged as u64)
            });
            if !same_layout || old_pages.len() < first_page {
                return Ok(None);
            }
            let keep = documents.unchanged - first_page * per_page;
            if keep > 0 {
                let rel = format!("{assets}/page-{}.json", first_page + 1);
                let page = self.read_page(&rel).await?;
                match page.filter(|f| f.len() >= keep) {
                    Some(mut f) => {
                        f.truncate(keep);
                        carried = f;
                    }
                    None => return Ok(None),
                }
            }
        }
        let old_page_count = old_index.as_ref().map(|_| old_pages.len());
        let mut index_pages: Vec<Value> = old_pages.into_iter().take(first_page).collect();
        let digests: std::collections::HashMap<String, String> = index_pages
            .iter()
            .filter_map(|p| {
                Some((
                    p["href"].as_str()?.to_string(),
                    p["zarrstac:digest"].as_str()?.to_string(),
                ))
            })
            .collect();
        let n_pages = total.div_ceil(per_page);
        let links = json!([
            {"rel": "item", "href": format!("../{id}.json"), "type": "application/geo+json"},
            {"rel": "collection", "href": "../../collection.json", "type": "application/json"},
            {"rel": "root", "href": "../../../catalog.json", "type": "application/json"},
        ]);
        let mut rest = carried;
        rest.reserve(documents.tail.len());
        for mut d in documents.tail {
            d["links"] = links.clone();
            rest.push(PageDocument::of(&d)?);
        }
        for (k, page) in rest.chunks(per_page).enumerate() {
            let n = first_page + k + 1;
            let mut links = vec![
                json!({"rel": "self", "href": format!("./page-{n}.json"), "type": "application/geo+json"}),
                json!({"rel": "item", "href": format!("../{id}.json"), "type": "application/geo+json"}),
                json!({"rel": "first", "href": "./page-1.json", "type": "application/geo+json"}),
            ];
            if n > 1 {
                links.push(json!({"rel": "prev", "href": format!("./page-{}.json", n - 1), "type": "application/geo+json"}));
            }
            if n < n_pages {
                links.push(json!({"rel": "next", "href": format!("./page-{}.json", n + 1), "type": "application/geo+json"}));
            }
            // No totals here: a page's bytes change only when its own documents (or its
            // neighbours) do; the index holds the totals.
            let bytes = page_bytes(page, &links);
            let digest = format!("{:016x}", zarrstac_io::fnv1a(&bytes));
            let href = format!("./page-{n}.json");
            if digests.get(&href) != Some(&digest)
                && self
                    .put_if_changed(&format!("{assets}/page-{n}.json"), bytes)
                    .await?
                    == WriteOutcome::Written
            {
                outcome = WriteOutcome::Written;
            }
            index_pages.push(json!({
                "href": href,
                "start_datetime": page.iter().filter_map(|d| d.start.as_deref()).min(),
                "end_datetime": page.iter().filter_map(|d| d.end.as_deref()).max(),
                "numberReturned": page.len(),
                "zarrstac:digest": digest,
            }));
        }
        let index = json!({
            "type": "AssetIndex",
            "item": id,
            "collection": collection,
            "numberMatched": total,
            "page_size": per_page,
            "pages": index_pages,
            "links": [
                {"rel": "item", "href": format!("../{id}.json"), "type": "application/geo+json"},
                {"rel": "first", "href": "./page-1.json", "type": "application/geo+json"},
            ],
        });
        if self.put_if_changed(&index_rel, pretty(&index)).await? == WriteOutcome::Written {
            outcome = WriteOutcome::Written;
        }
        // Pages left from a longer list: those the old index named, else whatever the
        // folder holds (a list written before its index, say).
        let folder = self.root.join(&assets);
        let stale: Vec<object_store::path::Path> = match old_page_count {
            Some(count) => (n_pages + 1..=count)
                .map(|n| folder.join(&format!("page-{n}.json")).path)
                .collect(),
            None => Self::list(&folder)
                .await?
                .into_iter()
                .map(|meta| meta.location)
                .filter(|location| {
                    location
                        .filename()
                        .and_then(|f| f.strip_prefix("page-")?.strip_suffix(".json")?.parse().ok())
                        .is_some_and(|p: usize| p > n_pages)
                })
                .collect(),
        };
        for location in stale {
            match folder.store.delete(&location).await {
                Ok(()) => outcome = WriteOutcome::Written,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::store_err(&folder.url)(e)),
            }
        }
        Ok(Some(outcome))
    }

    #[cfg(test)]
    async fn exists(&self, rel: &str) -> bool {
        let at = self.root.join(rel);
        at.store.head(&at.path).await.is_ok()
    }

    /// Every object below `folder`.
    async fn list(folder: &Location) -> Result<Vec<object_store::ObjectMeta>, CatalogError> {
        folder
            .store
            .list(Some(&folder.path))
            .try_collect()
            .await
            .map_err(Self::store_err(&folder.url))
    }

    /// Paths of every item document of a collection (`<item>/<item>.json`), in path
    /// order: the item folders of one listing, not a walk through them (an item of many
    /// files holds a folder of asset pages).
    async fn items_of(&self, collection: &str) -> Result<Vec<String>, CatalogError> {
        let prefix = self.root.join(collection);
        let listed = prefix
            .store
            .list_with_delimiter(Some(&prefix.path))
            .await
            .map_err(Self::store_err(&prefix.url))?;
        let mut rels: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .map(|dir| format!("{collection}/{dir}/{dir}.json"))
            .collect();
        rels.sort();
        Ok(rels)
    }

    /// Rewrites a collection from the items it holds: extent, summaries, item links.
    pub async fn refresh_collection(&self, collection: &str) -> Result<WriteOutcome, CatalogError> {
        let items = self.items_of(collection).await?;
        let mut extent = CollectionExtent::default();
        let mut links = vec![
            json!({"rel": "root", "href": "../catalog.json", "type": "application/json"}),
            json!({"rel": "parent", "href": "../catalog.json", "type": "application/json"}),
        ];
        // One item in memory at a time: collections can hold very many.
        for rel in &items {
            let Some(item) = self.read_json::<Value>(rel).await? else {
                continue;
            };
            extent.add_item(&item);
            let href = format!(
                "./{}",
                rel.strip_prefix(&format!("{collection}/")).unwrap_or(rel)
            );
            links.push(json!({"rel": "item", "href": href, "type": "application/geo+json"}));
        }
        let doc = extent.to_collection(collection, links);
        self.put_if_changed(&format!("{collection}/collection.json"), pretty(&doc))
            .await
    }

    /// Rewrites `catalog.json` with a child link per collection present.
    pub async fn refresh_root(&self) -> Result<WriteOutcome, CatalogError> {
        let listed = self
            .root
            .store
            .list_with_delimiter(Some(&self.root.path))
            .await
            .map_err(Self::store_err(&self.root.url))?;
        let mut collections: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        collections.sort();
        let mut links =
            vec![json!({"rel": "root", "href": "./catalog.json", "type": "application/json"})];
        for c in collections {
            if self
                .read_json::<Value>(&format!("{c}/collection.json"))
                .await?
                .is_some()
            {
                links.push(json!({"rel": "child", "href": format!("./{c}/collection.json"), "type": "application/json"}));
            }
        }
        let doc = json!({
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": self.id,
            "description": self.description,
            "links": links,
        });
        self.put_if_changed("catalog.json", pretty(&doc)).await
    }
}

#[async_trait::async_trait]
impl CatalogSink for StaticCatalog {
    fn url(&self) -> String {
        crate::redact(&self.root.url)
    }

    fn prepare_item(&self, item: &mut Value) {
        Self::link_item(item);
    }

    fn batches(&self) -> bool {
        false
    }

    async fn upsert_items(&self, items: Vec<Value>) -> Result<Vec<ItemOutcome>, CatalogError> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(match self.write_item(item).await {
                Ok(WriteOutcome::Written) => ItemOutcome::Written,
                Ok(WriteOutcome::Unchanged) => ItemOutcome::Unchanged,
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => ItemOutcome::Rejected(e.to_string()),
            });
        }
        Ok(outcomes)
    }

    fn holds_asset_documents(&self) -> bool {
        true
    }

    async fn put_asset_documents(
        &self,
        collection: &str,
        item_id: &str,
        documents: AssetDocuments,
    ) -> Result<Option<(Value, bool)>, CatalogError> {
        let total = documents.len();
        let Some(outcome) = self
            .write_asset_documents(collection, item_id, documents)
            .await?
        else {
            return Ok(None);
        };
        let link = json!({
            "rel": "asset",
            "href": "./assets/index.json",
            "type": "application/json",
            "title": format!("{total} assets, in pages of {} by time", self.asset_page_size),
        });
        Ok(Some((link, outcome == WriteOutcome::Written)))
    }

    async fn get_item(&self, collection: &str, id: &str) -> Result<Option<Value>, CatalogError> {
        let at = self.root.join(&Self::item_path(collection, id));
        let bytes = match at.store.get(&at.path).await {
            Ok(got) => got.bytes().await.map_err(Self::store_err(&at.url))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Self::store_err(&at.url)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CatalogError::Invalid {
                url: at.url.clone(),
                reason: e.to_string(),
            })
    }

    async fn delete_item(&self, collection: &str, id: &str) -> Result<(), CatalogError> {
        let folder = self.root.join(&format!("{collection}/{id}"));
        let listed = Self::list(&folder).await?;
        for meta in listed {
            match folder.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::store_err(&folder.url)(e)),
            }
        }
        Ok(())
    }

    async fn refresh(&self, collections: &[String]) -> Result<(), CatalogError> {
        for c in collections {
            self.refresh_collection(c).await?;
        }
        self.refresh_root().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, bbox: [f64; 4], start: &str, end: &str) -> Value {
        json!({
            "type": "Feature", "stac_version": "1.1.0", "id": id, "collection": "c1",
            "geometry": null, "bbox": bbox,
            "properties": {"datetime": null, "start_datetime": start, "end_datetime": end, "platform": "p"},
            "links": [{"rel": "store", "href": "file:///x.json"}], "assets": {}
        })
    }

    #[tokio::test]
    async fn asset_documents_are_paged_by_time_with_an_index() {
        let root = Location::parse("memory://static-asset-pages/cat").unwrap();
        let cat = StaticCatalog::new(root).with_asset_page_size(2);
        let doc = |k: usize| {
            json!({"type": "Feature", "id": format!("f{k}"), "href": format!("file:///f{k}.nc"),
                   "geometry": null, "links": [],
                   "properties": {"start_datetime": format!("200{k}-01-01T00:00:00Z"),
                                  "end_datetime": format!("200{k}-12-31T00:00:00Z")}})
        };
        let five: Vec<Value> = (0..5).map(doc).collect();
        let (link, changed) = cat
            .put_asset_documents("c1", "d", AssetDocuments::all(five.clone()))
            .await
            .unwrap()
            .unwrap();
        assert!(changed);
        assert_eq!(link["rel"], "asset");
        assert_eq!(link["href"], "./assets/index.json");
        let (_, again) = cat
            .put_asset_documents("c1", "d", AssetDocuments::all(five))
            .await
            .unwrap()
            .unwrap();
        assert!(!again, "the same documents write nothing");
        let read = |rel: &str| {
            let at = cat.root.join(rel);
            let store = at.store.clone();
            async move {
                let b = store.get(&at.path).await.unwrap().bytes().await.unwrap();
                serde_json::from_slice::<Value>(&b).unwrap()
            }
        };
        let index = read("c1/d/assets/index.json").await;
        assert_eq!(index["numberMatched"], 5);
        let pages = index["pages"].as_array().unwrap();
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[1]["start_datetime"], "2002-01-01T00:00:00Z");
        assert_eq!(pages[1]["end_datetime"], "2003-12-31T00:00:00Z");
        // Following next links visits every document once, in order.
        let mut seen = Vec::new();
        let mut page = Some("page-1.json".to_string());
        while let Some(p) = page {
            let doc = read(&format!("c1/d/assets/{p}")).await;
            assert_eq!(doc["type"], "FeatureCollection");
            for f in doc["features"].as_array().unwrap() {
                seen.push(f["id"].as_str().unwrap().to_string());
                assert_eq!(f["links"][0]["href"], "../d.json");
            }
            page = doc["links"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["rel"] == "next")
                .map(|l| {
                    l["href"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("./")
                        .to_string()
                });
        }
        assert_eq!(seen, ["f0", "f1", "f2", "f3", "f4"]);
        // A sixth document sent alone, after the five: the last page takes it, and the
        // pages read back are those a full list would have written.
        let tail = AssetDocuments {
            unchanged: 5,
            tail: vec![doc(5)],
        };
        let (_, grew) = cat
            .put_asset_documents("c1", "d", tail)
            .await
            .unwrap()
            .unwrap();
        assert!(grew);
        let grown = (
            read("c1/d/assets/page-3.json").await,
            read("c1/d/assets/index.json").await,
        );
        let whole =
            StaticCatalog::new(Location::parse("memory://static-asset-pages-2/cat").unwrap())
                .with_asset_page_size(2);
        whole
            .put_asset_documents("c1", "d", AssetDocuments::all((0..6).map(doc).collect()))
            .await
            .unwrap();
        let at = |rel: &str| {
            let loc = whole.root.join(rel);
            async move {
                let b = loc
                    .store
                    .get(&loc.path)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                serde_json::from_slice::<Value>(&b).unwrap()
            }
        };
        assert_eq!(grown.0, at("c1/d/assets/page-3.json").await);
        assert_eq!(grown.1, at("c1/d/assets/index.json").await);
        assert_eq!(grown.0["numberReturned"], 2);
        // A tail the stored pages cannot complete is refused: send the whole list.
        let gap = AssetDocuments {
            unchanged: 40,
            tail: vec![doc(7)],
        };
        assert!(
            cat.put_asset_documents("c1", "d", gap)
                .await
                .unwrap()
                .is_none()
        );
        // Fewer documents drop the pages beyond the last.
        cat.put_asset_documents("c1", "d", AssetDocuments::all((0..2).map(doc).collect()))
            .await
            .unwrap();
        assert!(!cat.exists("c1/d/assets/page-2.json").await);
        assert!(cat.exists("c1/d/assets/page-1.json").await);
    }

    #[tokio::test]
    async fn writes_once_and_keeps_extents_current() {
        let dir = std::env::temp_dir().join(format!("zarrstac-cat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cat = StaticCatalog::new(Location::parse(dir.to_str().unwrap()).unwrap());
        let a = item(
            "a",
            [0.0, 0.0, 10.0, 10.0],
            "2000-01-01T00:00:00Z",
            "2000-12-31T00:00:00Z",
        );
        let b = item(
            "b",
            [-20.0, 5.0, 5.0, 20.0],
            "1999-01-01T00:00:00Z",
            "1999-06-01T00:00:00Z",
        );
        // Same second, one with a fraction: instants are compared, not text ('.' < 'Z').
        let c = item(
            "c",
            [0.0, 0.0, 1.0, 1.0],
            "2000-12-31T00:00:00.500Z",
            "2000-12-31T00:00:00.500Z",
        );
        assert_eq!(
            cat.write_item(a.clone()).await.unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(cat.write_item(b).await.unwrap(), WriteOutcome::Written);
        assert_eq!(cat.write_item(c).await.unwrap(), WriteOutcome::Written);
        assert_eq!(cat.write_item(a).await.unwrap(), WriteOutcome::Unchanged);
        assert_eq!(
            cat.refresh_collection("c1").await.unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(
            cat.refresh_collection("c1").await.unwrap(),
            WriteOutcome::Unchanged
        );
        assert_eq!(cat.refresh_root().await.unwrap(), WriteOutcome::Written);
        let coll: Value =
            serde_json::from_slice(&std::fs::read(dir.join("c1/collection.json")).unwrap())
                .unwrap();
        assert_eq!(
            coll["extent"]["spatial"]["bbox"],
            json!([[-20.0, 0.0, 10.0, 20.0]])
        );
        assert_eq!(
            coll["extent"]["temporal"]["interval"],
            json!([["1999-01-01T00:00:00Z", "2000-12-31T00:00:00.500Z"]])
        );
        assert_eq!(coll["summaries"]["platform"], json!(["p"]));
        let items: Vec<&str> = coll["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["rel"] == "item")
            .map(|l| l["href"].as_str().unwrap())
            .collect();
        assert_eq!(items, vec!["./a/a.json", "./b/b.json", "./c/c.json"]);
        let written: Value =
            serde_json::from_slice(&std::fs::read(dir.join("c1/a/a.json")).unwrap()).unwrap();
        assert!(
            written["links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["rel"] == "store")
        );
        assert!(
            written["links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["rel"] == "root" && l["href"] == "../../catalog.json")
        );
        let root: Value =
            serde_json::from_slice(&std::fs::read(dir.join("catalog.json")).unwrap()).unwrap();
        assert_eq!(root["links"][1]["href"], "./c1/collection.json");
        std::fs::remove_dir_all(&dir).ok();
    }
}
