use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde_json::{Map, Value, json};
use zarrstac_io::Location;

use crate::collection::{CollectionExtent, STAC_VERSION};
use crate::{CatalogError, CatalogSink, ItemOutcome};

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

    async fn read_json(&self, rel: &str) -> Result<Option<Value>, CatalogError> {
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
        let assets: Vec<(String, Value)> = item["assets"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        if let Some(links) = item["links"].as_array_mut() {
            links.retain(|l| l["rel"] != "asset");
        }
        if assets.len() > self.asset_page_size {
            // The item keeps every asset; the pages let clients fetch them in parts.
            let pages: Vec<&[(String, Value)]> = assets.chunks(self.asset_page_size).collect();
            for (k, page) in pages.iter().enumerate() {
                let n = k + 1;
                let mut links = vec![
                    json!({"rel": "item", "href": format!("../{id}.json"), "type": "application/geo+json"}),
                    json!({"rel": "first", "href": "page-1.json", "type": "application/json"}),
                    json!({"rel": "last", "href": format!("page-{}.json", pages.len()), "type": "application/json"}),
                ];
                if n > 1 {
                    links.push(json!({"rel": "prev", "href": format!("page-{}.json", n - 1), "type": "application/json"}));
                }
                if n < pages.len() {
                    links.push(json!({"rel": "next", "href": format!("page-{}.json", n + 1), "type": "application/json"}));
                }
                let doc = json!({
                    "type": "AssetList",
                    "stac_version": STAC_VERSION,
                    "item": id,
                    "page": n,
                    "pages": pages.len(),
                    "assets": page.iter().cloned().collect::<Map<String, Value>>(),
                    "links": links,
                });
                let rel = format!("{collection}/{id}/assets/page-{n}.json");
                if self.put_if_changed(&rel, pretty(&doc)).await? == WriteOutcome::Written {
                    outcome = WriteOutcome::Written;
                }
            }
            if let Some(links) = item["links"].as_array_mut() {
                links.push(json!({
                    "rel": "asset",
                    "href": "./assets/page-1.json",
                    "type": "application/json",
                    "title": format!("{} assets in {} pages of {}", assets.len(), pages.len(), self.asset_page_size),
                }));
            }
        }
        if self
            .put_if_changed(&Self::item_path(&collection, &id), pretty(&item))
            .await?
            == WriteOutcome::Written
        {
            outcome = WriteOutcome::Written;
        }
        Ok(outcome)
    }

    /// Paths of every item document of a collection, in path order.
    async fn items_of(&self, collection: &str) -> Result<Vec<String>, CatalogError> {
        let prefix = self.root.join(collection);
        let listed: Vec<object_store::ObjectMeta> = prefix
            .store
            .list(Some(&prefix.path))
            .try_collect()
            .await
            .map_err(Self::store_err(&prefix.url))?;
        let mut rels: Vec<String> = listed
            .iter()
            .filter_map(|m| {
                let rel = m
                    .location
                    .as_ref()
                    .strip_prefix(prefix.path.as_ref())?
                    .trim_start_matches('/');
                let mut parts = rel.split('/');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(dir), Some(file), None) if file == format!("{dir}.json") => {
                        Some(format!("{collection}/{rel}"))
                    }
                    _ => None,
                }
            })
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
            let Some(item) = self.read_json(rel).await? else {
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
                .read_json(&format!("{c}/collection.json"))
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
        let listed: Vec<object_store::ObjectMeta> = folder
            .store
            .list(Some(&folder.path))
            .try_collect()
            .await
            .map_err(Self::store_err(&folder.url))?;
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
    async fn many_assets_are_also_paged_out() {
        let dir = std::env::temp_dir().join(format!("zarrstac-pages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cat = StaticCatalog::new(Location::parse(dir.to_str().unwrap()).unwrap())
            .with_asset_page_size(2);
        let mut it = item(
            "d",
            [0.0, 0.0, 1.0, 1.0],
            "2000-01-01T00:00:00Z",
            "2000-02-01T00:00:00Z",
        );
        for k in 0..5 {
            it["assets"][format!("f{k}")] = json!({"href": format!("file:///f{k}.nc")});
        }
        assert_eq!(
            cat.write_item(it.clone()).await.unwrap(),
            WriteOutcome::Written
        );
        assert_eq!(cat.write_item(it).await.unwrap(), WriteOutcome::Unchanged);
        let written: Value =
            serde_json::from_slice(&std::fs::read(dir.join("c1/d/d.json")).unwrap()).unwrap();
        assert_eq!(written["assets"].as_object().unwrap().len(), 5);
        let asset_links: Vec<&Value> = written["links"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["rel"] == "asset")
            .collect();
        assert_eq!(asset_links.len(), 1);
        assert_eq!(asset_links[0]["href"], "./assets/page-1.json");
        let mut seen = Vec::new();
        let mut page = Some("page-1.json".to_string());
        while let Some(p) = page {
            let doc: Value =
                serde_json::from_slice(&std::fs::read(dir.join("c1/d/assets").join(&p)).unwrap())
                    .unwrap();
            seen.extend(doc["assets"].as_object().unwrap().keys().cloned());
            page = doc["links"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["rel"] == "next")
                .map(|l| l["href"].as_str().unwrap().to_string());
        }
        assert_eq!(seen, vec!["f0", "f1", "f2", "f3", "f4"]);
        std::fs::remove_dir_all(&dir).ok();
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
