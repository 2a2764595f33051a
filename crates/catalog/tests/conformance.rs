//! One suite every `CatalogSink` passes: the static catalog on an in-memory store, and —
//! against the real services the test script starts — a STAC API with Transactions
//! (stac-fastapi-pgstac) and pgstac itself.
//!
//! The services are named by `ZARRSTAC_TEST_API` and `ZARRSTAC_TEST_PGSTAC`
//! (`deploy/stack.sh env`). Without them those two cases are skipped, except under
//! `CI=true`, where a missing service is a failure.

use std::sync::Arc;

use serde_json::{Value, json};
use zarrstac_catalog::{AssetDocuments, CatalogSink, ItemOutcome, SinkConfig, StaticCatalog};
use zarrstac_io::Location;

fn item(collection: &str, id: &str, west: f64, value: &str) -> Value {
    json!({
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": id,
        "collection": collection,
        "geometry": {"type": "Polygon", "coordinates": [[
            [west, -10.0], [west + 10.0, -10.0], [west + 10.0, 10.0], [west, 10.0], [west, -10.0]
        ]]},
        "bbox": [west, -10.0, west + 10.0, 10.0],
        "properties": {"datetime": "2001-02-03T04:05:06Z", "title": value},
        "links": [],
        "assets": {"data": {"href": format!("s3://bucket/{id}.nc"), "roles": ["data"]}}
    })
}

fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

async fn get(sink: &dyn CatalogSink, collection: &str, id: &str) -> Option<Value> {
    sink.get_item(collection, id).await.unwrap()
}

/// What every sink must do.
async fn conformance(sink: Arc<dyn CatalogSink>) {
    let run = unique();
    let (c1, c2) = (format!("conf-a-{run}"), format!("conf-b-{run}"));
    let mut items = vec![
        item(&c1, "one", 0.0, "first"),
        item(&c1, "two", 20.0, "first"),
        item(&c2, "three", 40.0, "first"),
    ];
    for i in &mut items {
        sink.prepare_item(i);
    }

    // New items in new collections: each is written and reads back as sent.
    let outcomes = sink.upsert_items(items.clone()).await.unwrap();
    assert_eq!(outcomes, vec![ItemOutcome::Written; 3], "{}", sink.url());
    for i in &items {
        let (c, id) = (i["collection"].as_str().unwrap(), i["id"].as_str().unwrap());
        let got = get(&*sink, c, id)
            .await
            .unwrap_or_else(|| panic!("{id} not found"));
        assert_eq!(got["id"], i["id"]);
        assert_eq!(got["collection"], i["collection"]);
        assert_eq!(got["properties"]["title"], "first");
        assert_eq!(got["bbox"], i["bbox"]);
        assert_eq!(got["assets"]["data"]["href"], i["assets"]["data"]["href"]);
    }
    assert!(
        get(&*sink, &c1, "three").await.is_none(),
        "an item is found in its own collection only"
    );

    // The same items again: an upsert, nothing refused, still one of each.
    let again = sink.upsert_items(items.clone()).await.unwrap();
    assert!(
        again.iter().all(|o| !matches!(o, ItemOutcome::Rejected(_))),
        "{again:?}"
    );

    // A changed item replaces the one held.
    let mut changed = item(&c1, "two", 20.0, "second");
    sink.prepare_item(&mut changed);
    let outcome = sink.upsert_items(vec![changed]).await.unwrap();
    assert_eq!(outcome, vec![ItemOutcome::Written]);
    assert_eq!(
        get(&*sink, &c1, "two").await.unwrap()["properties"]["title"],
        "second"
    );

    // Removed, and removing what is gone is no error.
    sink.delete_item(&c1, "one").await.unwrap();
    assert!(get(&*sink, &c1, "one").await.is_none());
    sink.delete_item(&c1, "one").await.unwrap();
    assert!(
        get(&*sink, &c1, "two").await.is_some(),
        "only that item went"
    );

    sink.refresh(&[c1, c2]).await.unwrap();
}

fn asset_doc(collection: &str, item: &str, k: usize) -> Value {
    json!({
        "type": "Feature", "stac_version": "1.0.0", "id": format!("f{k:03}"),
        "item": item, "collection": collection, "href": format!("s3://bucket/f{k:03}.nc"),
        "media_type": "application/x-netcdf", "roles": ["data"],
        "geometry": {"type": "Point", "coordinates": [1.0, 2.0]}, "bbox": [1.0, 2.0, 1.0, 2.0],
        "properties": {
            "start_datetime": format!("20{:02}-01-01T00:00:00Z", k),
            "end_datetime": format!("20{:02}-01-01T00:00:00Z", k + 1),
            "datetime": format!("20{:02}-01-01T00:00:00Z", k)
        },
        "links": []
    })
}

/// What every sink that keeps asset documents must do: report whether they changed,
/// take a tail after documents it holds, ask for the whole list when it cannot complete
/// a tail, and let them go with their item.
async fn asset_document_conformance(sink: Arc<dyn CatalogSink>) {
    assert!(sink.holds_asset_documents(), "{}", sink.url());
    let run = unique();
    let collection = format!("conf-assets-{run}");
    let docs =
        |n: usize| -> Vec<Value> { (0..n).map(|k| asset_doc(&collection, "big", k)).collect() };
    let big = item(&collection, "big", 0.0, "many files");
    let put = |documents: AssetDocuments| {
        let sink = sink.clone();
        let collection = collection.clone();
        async move {
            sink.put_asset_documents(&collection, "big", documents)
                .await
                .unwrap()
        }
    };
    let publish = |mut item: Value, link: Value| {
        let sink = sink.clone();
        async move {
            item["links"] = json!([link]);
            sink.prepare_item(&mut item);
            let outcome = sink.upsert_items(vec![item]).await.unwrap();
            assert!(
                matches!(
                    outcome.as_slice(),
                    [ItemOutcome::Written | ItemOutcome::Unchanged]
                ),
                "{outcome:?}"
            );
        }
    };

    let (link, changed) = put(AssetDocuments::all(docs(5)))
        .await
        .expect("a whole list");
    assert!(changed, "new documents are a change");
    assert_eq!(link["rel"], "asset");
    publish(big.clone(), link).await;
    let (link, changed) = put(AssetDocuments::all(docs(5))).await.unwrap();
    assert!(!changed, "the same documents again change nothing");
    publish(big.clone(), link).await;

    // A tail after the 5 held.
    let grown = AssetDocuments {
        unchanged: 5,
        tail: docs(7)[5..].to_vec(),
    };
    let (link, changed) = put(grown).await.expect("a tail after what is held");
    assert!(changed);
    publish(big.clone(), link).await;
    // One document changed in place: a change.
    let mut changed_one = docs(7);
    changed_one[2]["properties"]["file:size"] = json!(12345);
    let (link, changed) = put(AssetDocuments::all(changed_one)).await.unwrap();
    assert!(changed, "a replaced document is a change");
    publish(big.clone(), link).await;
    // A tail the sink cannot complete: it asks for the whole list.
    let beyond = AssetDocuments {
        unchanged: 9,
        tail: docs(10)[9..].to_vec(),
    };
    assert!(
        put(beyond).await.is_none(),
        "a tail after documents not held"
    );
    // Fewer documents: the others go.
    let (link, changed) = put(AssetDocuments::all(docs(3))).await.unwrap();
    assert!(changed, "dropping documents is a change");
    publish(big.clone(), link).await;
    let (_, changed) = put(AssetDocuments::all(docs(3))).await.unwrap();
    assert!(!changed, "exactly those 3 are held");

    // Gone with the item: a tail after any of them can no longer be completed.
    sink.delete_item(&collection, "big").await.unwrap();
    let after = AssetDocuments {
        unchanged: 3,
        tail: docs(4)[3..].to_vec(),
    };
    assert!(
        put(after).await.is_none(),
        "the item's documents went with it"
    );
    sink.refresh(std::slice::from_ref(&collection))
        .await
        .unwrap();
}

fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: the test script starts the catalog stack for this suite")
        }
        _ => {
            eprintln!(
                "skipped: {var} is not set (deploy/stack.sh up; eval \"$(deploy/stack.sh env)\")"
            );
            None
        }
    }
}

#[tokio::test]
async fn static_catalog_on_an_in_memory_store() {
    let root = Location::parse(&format!("memory://conformance-{}/catalog", unique())).unwrap();
    conformance(Arc::new(StaticCatalog::new(root))).await;
}

/// The suite against the service named by the environment variable `var`.
async fn conformance_of(var: &str) {
    let Some(url) = service(var) else {
        return;
    };
    let sink = zarrstac_catalog::open(&url, &SinkConfig::default())
        .await
        .unwrap();
    conformance(sink).await;
}

#[tokio::test]
async fn static_catalog_asset_documents() {
    let root = Location::parse(&format!("memory://assets-{}/catalog", unique())).unwrap();
    asset_document_conformance(Arc::new(StaticCatalog::new(root).with_asset_page_size(2))).await;
}

#[tokio::test]
async fn pgstac_asset_documents() {
    let Some(url) = service("ZARRSTAC_TEST_PGSTAC") else {
        return;
    };
    let config = SinkConfig {
        asset_api_url: Some("http://assets.example".into()),
        ..SinkConfig::default()
    };
    let sink = zarrstac_catalog::open(&url, &config).await.unwrap();
    asset_document_conformance(sink).await;
}

#[tokio::test]
async fn stac_api_with_transactions() {
    conformance_of("ZARRSTAC_TEST_API").await;
}

#[tokio::test]
async fn pgstac() {
    conformance_of("ZARRSTAC_TEST_PGSTAC").await;
}
