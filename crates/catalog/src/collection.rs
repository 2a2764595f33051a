//! Collection documents kept current from the items they hold: spatial and temporal
//! extent and summaries of the properties operators filter by.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

pub(crate) const STAC_VERSION: &str = "1.1.0";

/// Properties whose distinct values are summarized in collections.
pub const SUMMARIZED: &[&str] = &[
    "platform",
    "constellation",
    "instrument",
    "product:type",
    "proj:code",
    "cmip6:activity_id",
    "cmip6:experiment_id",
    "cmip6:frequency",
    "cmip6:grid_label",
    "cmip6:institution_id",
    "cmip6:source_id",
    "cmip6:table_id",
    "cmip6:variable_id",
    "cmip6:variant_label",
];

/// (instant, text as written): compared as instants, written as the items wrote them.
type Instant = (DateTime<Utc>, String);

fn instant(t: &Value) -> Option<Instant> {
    let t = t.as_str()?;
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| (d.with_timezone(&Utc), t.to_string()))
}

/// The extent and summaries of a set of items, grown one item (or one existing
/// collection) at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionExtent {
    bbox: Option<[f64; 4]>,
    start: Option<Instant>,
    end: Option<Instant>,
    summaries: BTreeMap<String, BTreeSet<String>>,
}

impl CollectionExtent {
    /// Grows the extent by an item's bbox and time range and its summarized properties.
    pub fn add_item(&mut self, item: &Value) {
        if let Some(b) = item["bbox"].as_array() {
            let v: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
            match v.len() {
                4 => self.add_bbox([v[0], v[1], v[2], v[3]]),
                6 => self.add_bbox([v[0], v[1], v[3], v[4]]),
                _ => {}
            }
        }
        let p = &item["properties"];
        for t in [&p["start_datetime"], &p["datetime"]] {
            self.add_start(instant(t));
        }
        for t in [&p["end_datetime"], &p["datetime"]] {
            self.add_end(instant(t));
        }
        for key in SUMMARIZED {
            let values: Vec<&str> = match &p[*key] {
                Value::String(v) => vec![v.as_str()],
                Value::Array(vs) => vs.iter().filter_map(Value::as_str).collect(),
                _ => continue,
            };
            let set = self.summaries.entry(key.to_string()).or_default();
            set.extend(values.into_iter().map(str::to_string));
        }
    }

    /// Grows the extent by what an existing collection document already states: its
    /// overall bbox and interval, and summaries given as value lists.
    pub fn add_collection(&mut self, collection: &Value) {
        let extent = &collection["extent"];
        if let Some(b) = extent["spatial"]["bbox"][0].as_array() {
            let v: Vec<f64> = b.iter().filter_map(Value::as_f64).collect();
            if v.len() == 4 {
                self.add_bbox([v[0], v[1], v[2], v[3]]);
            }
        }
        let interval = &extent["temporal"]["interval"][0];
        self.add_start(instant(&interval[0]));
        self.add_end(instant(&interval[1]));
        if let Some(s) = collection["summaries"].as_object() {
            for (k, vs) in s {
                if let Some(vs) = vs.as_array() {
                    let set = self.summaries.entry(k.clone()).or_default();
                    set.extend(vs.iter().filter_map(Value::as_str).map(str::to_string));
                }
            }
        }
    }

    fn add_bbox(&mut self, b: [f64; 4]) {
        if b.iter().any(|v| !v.is_finite()) {
            return;
        }
        self.bbox = Some(match self.bbox {
            None => b,
            Some(a) => union_bbox(a, b),
        });
    }

    fn add_start(&mut self, t: Option<Instant>) {
        if let Some(t) = t
            && self.start.as_ref().is_none_or(|x| t.0 < x.0)
        {
            self.start = Some(t);
        }
    }

    fn add_end(&mut self, t: Option<Instant>) {
        if let Some(t) = t
            && self.end.as_ref().is_none_or(|x| t.0 > x.0)
        {
            self.end = Some(t);
        }
    }

    /// A collection document for `id` with this extent and these summaries, and `links`.
    pub fn to_collection(&self, id: &str, links: Vec<Value>) -> Value {
        let bbox = match self.bbox {
            Some(b) => json!([b]),
            None => json!([[-180.0, -90.0, 180.0, 90.0]]),
        };
        let mut doc = json!({
            "type": "Collection",
            "stac_version": STAC_VERSION,
            "id": id,
            "description": format!("Items of '{id}', ingested by zarrstac"),
            "license": "other",
            "extent": {
                "spatial": {"bbox": bbox},
                "temporal": {"interval": [[
                    self.start.as_ref().map(|s| s.1.clone()),
                    self.end.as_ref().map(|e| e.1.clone())
                ]]}
            },
            "links": links,
        });
        if !self.summaries.is_empty() {
            let mut s = Map::new();
            for (k, vs) in &self.summaries {
                s.insert(k.clone(), json!(vs.iter().collect::<Vec<_>>()));
            }
            doc["summaries"] = Value::Object(s);
        }
        doc
    }

    /// Whether `collection` already states this extent and these summaries.
    pub fn is_stated_by(&self, collection: &Value) -> bool {
        let mut stated = CollectionExtent::default();
        stated.add_collection(collection);
        stated.bbox == self.bbox
            && stated.start.as_ref().map(|s| s.0) == self.start.as_ref().map(|s| s.0)
            && stated.end.as_ref().map(|s| s.0) == self.end.as_ref().map(|s| s.0)
            && stated.summaries == self.summaries
    }
}

/// The box holding both boxes. A box across the antimeridian (west greater than east)
/// joined with one that is not, or two such boxes that meet, span every longitude.
fn union_bbox(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    let (south, north) = (a[1].min(b[1]), a[3].max(b[3]));
    let (west, east) = match (a[0] > a[2], b[0] > b[2]) {
        (false, false) => (a[0].min(b[0]), a[2].max(b[2])),
        (true, true) if a[0].min(b[0]) > a[2].max(b[2]) => (a[0].min(b[0]), a[2].max(b[2])),
        _ => (-180.0, 180.0),
    };
    [west, south, east, north]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_across_the_antimeridian_join_without_losing_longitudes() {
        let crossing = [165.0, 55.0, -165.0, 70.0];
        assert_eq!(
            union_bbox(crossing, [170.0, 50.0, -170.0, 60.0]),
            [165.0, 50.0, -165.0, 70.0]
        );
        assert_eq!(
            union_bbox(crossing, [0.0, 0.0, 10.0, 10.0]),
            [-180.0, 0.0, 180.0, 70.0]
        );
        assert_eq!(
            union_bbox([0.0, 0.0, 10.0, 10.0], [-5.0, -1.0, 3.0, 8.0]),
            [-5.0, -1.0, 10.0, 10.0]
        );
    }

    fn item(bbox: [f64; 4], start: &str, end: &str, platform: &str) -> Value {
        json!({"bbox": bbox, "properties": {
            "datetime": null, "start_datetime": start, "end_datetime": end, "platform": platform
        }})
    }

    #[test]
    fn extent_covers_every_item_and_survives_a_round_trip() {
        let mut e = CollectionExtent::default();
        e.add_item(&item(
            [0.0, 0.0, 10.0, 5.0],
            "2000-01-01T00:00:00Z",
            "2000-02-01T00:00:00Z",
            "a",
        ));
        e.add_item(&item(
            [-5.0, 1.0, 3.0, 8.0],
            "1999-06-01T00:00:00Z",
            "1999-07-01T00:00:00+00:00",
            "b",
        ));
        let doc = e.to_collection("c", vec![]);
        assert_eq!(
            doc["extent"]["spatial"]["bbox"],
            json!([[-5.0, 0.0, 10.0, 8.0]])
        );
        assert_eq!(
            doc["extent"]["temporal"]["interval"],
            json!([["1999-06-01T00:00:00Z", "2000-02-01T00:00:00Z"]])
        );
        assert_eq!(doc["summaries"]["platform"], json!(["a", "b"]));
        assert!(e.is_stated_by(&doc));
        let mut grown = CollectionExtent::default();
        grown.add_collection(&doc);
        grown.add_item(&item(
            [0.0, 0.0, 1.0, 1.0],
            "2001-01-01T00:00:00Z",
            "2001-02-01T00:00:00Z",
            "a",
        ));
        assert!(!grown.is_stated_by(&doc));
        assert_eq!(
            grown.to_collection("c", vec![])["extent"]["temporal"]["interval"][0][1],
            "2001-02-01T00:00:00Z"
        );
    }
}
