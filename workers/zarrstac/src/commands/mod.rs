pub mod backfill;
pub mod combine;
pub mod ingest;
pub mod item;
pub mod publish;
pub mod refs;
pub mod replay;
pub mod validate;
pub mod worker;

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
