//! CMIP6 dataset items as ESGF publishes them: the cmip6 v3.0.2 extension, with the
//! alternate-assets and file extensions it requires.
//!
//! The schema describes published datasets: it requires fields that no file carries (the
//! dataset's PID, whether it is retracted or the latest version, a citation link). They
//! come from the caller ([`Publication`]); whatever cannot be filled honestly leaves the
//! extension undeclared, with the reason, and the item as it was (valid without it).

use serde_json::{Map, Value, json};
use zarrstac_model::Dataset;

use crate::item::FILE;
use crate::netcdf::{DatasetMember, dataset_version, global, normalize_timestamp};
use crate::validate::Validator;

pub const CMIP6: &str = "https://stac-extensions.github.io/cmip6/v3.0.2/schema.json";
pub const ALTERNATE: &str = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json";

/// The collection ESGF keeps CMIP6 dataset items in (a constant of the schema).
pub const COLLECTION: &str = "CMIP6";

/// The default `cite-as` link: the dataset's citation record at DKRZ's WDCC.
pub const CITE_AS_TEMPLATE: &str = "https://cera-www.dkrz.de/WDCC/meta/CMIP6/{instance_id}.json";

/// What a published dataset item states that its files do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The dataset's handle (`hdl:21.14100/<uuid>`); never invented.
    pub pid: Option<String>,
    pub retracted: bool,
    /// Whether this is the newest version of the dataset.
    pub latest: bool,
    /// The `cite-as` link, `{instance_id}` standing for the item id.
    pub cite_as_template: String,
    /// The data node serving the files (`alternate:name` of each asset).
    pub data_node: Option<String>,
}

impl Default for Publication {
    fn default() -> Self {
        Publication {
            pid: None,
            retracted: false,
            latest: true,
            cite_as_template: CITE_AS_TEMPLATE.into(),
            data_node: None,
        }
    }
}

/// What became of the extension on an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declaration {
    Declared,
    /// Not a CMIP6 dataset: nothing to declare.
    NotCmip6,
    /// A CMIP6 dataset whose item cannot declare the extension, and why.
    Undeclared(String),
}

/// Global attributes the schema lists as arrays (space-separated in the files).
const LIST_ATTRIBUTES: &[&str] = &["activity_id", "realm", "source_type"];
/// Integer-valued attributes the schema wants as strings of digits.
const INDEX_ATTRIBUTES: &[&str] = &[
    "forcing_index",
    "initialization_index",
    "physics_index",
    "realization_index",
];

/// A `creation_date` as RFC 3339 (UTC, seconds), when it is a timestamp; one without a
/// zone (CMOR writes `Z`, some tools nothing) is taken as UTC.
fn timestamp(s: &str) -> Option<String> {
    normalize_timestamp(s).or_else(|| {
        chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S")
            .ok()
            .map(|t| {
                t.and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
    })
}

/// The SPDX id of a CMIP6 `license` attribute (a sentence naming the licence), as the
/// schema lists them.
fn license_id(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    if t.contains("cc0") || t.contains("public domain dedication") {
        Some("CC0-1.0")
    } else if t.contains("attribution-noncommercial-sharealike 4.0")
        || t.contains("cc by-nc-sa 4.0")
    {
        Some("CC-BY-NC-SA-4.0")
    } else if t.contains("attribution-sharealike 4.0") || t.contains("cc by-sa 4.0") {
        Some("CC-BY-SA-4.0")
    } else if t.contains("attribution 4.0") || t.contains("cc by 4.0") {
        Some("CC-BY-4.0")
    } else {
        None
    }
}

/// The protocol of the cmip6 extension a file is served by, from its URL's scheme.
fn protocol(href: &str) -> Option<&'static str> {
    match href.split_once("://")?.0 {
        "https" => Some("https"),
        "http" => Some("http"),
        "s3" => Some("s3"),
        _ => None,
    }
}

/// Turns a CMIP6 dataset item (from [`crate::netcdf::item_for_dataset`]) into the one
/// ESGF publishes, when everything the schema requires is known and the result
/// validates; otherwise leaves `item` unchanged and says why.
pub fn declare(
    item: &mut Value,
    members: &[DatasetMember],
    combined: &Dataset,
    publication: &Publication,
    validator: &Validator,
) -> Declaration {
    if global(combined, "mip_era") != Some("CMIP6") {
        return Declaration::NotCmip6;
    }
    match published(item, members, combined, publication) {
        Err(reason) => Declaration::Undeclared(reason),
        Ok(candidate) => {
            // The extensions' verdict: the core schema's (its catalog links among them,
            // which the catalog adds later) is the publisher's to check.
            let problems: Vec<_> = validator
                .validate(&candidate)
                .into_iter()
                .filter(|p| [CMIP6, ALTERNATE, FILE].contains(&p.schema.as_str()))
                .collect();
            if problems.is_empty() {
                *item = candidate;
                return Declaration::Declared;
            }
            let shown: Vec<String> = problems.iter().take(3).map(|p| p.to_string()).collect();
            Declaration::Undeclared(format!(
                "the item would not validate with it ({} problems): {}",
                problems.len(),
                shown.join("; ")
            ))
        }
    }
}

/// The published form of `item`, or why there is none.
fn published(
    item: &Value,
    members: &[DatasetMember],
    combined: &Dataset,
    publication: &Publication,
) -> Result<Value, String> {
    let id = item["id"].as_str().unwrap_or_default().to_string();
    let collection = item["collection"].as_str().unwrap_or_default();
    if collection != COLLECTION {
        return Err(format!(
            "its collection is '{collection}', and the extension's schema requires '{COLLECTION}' \
             (the collection was set by the request or stac.collection)"
        ));
    }
    let Some(pid) = &publication.pid else {
        return Err(format!(
            "no PID is known for {id} (give dataset_pid in the request, or list the dataset \
             in datasets.pid_table)"
        ));
    };
    let version = dataset_version(members).ok_or_else(|| {
        format!("{id} has no version (no vYYYYMMDD directory, version or creation_date)")
    })?;
    let base_id = id
        .strip_suffix(&format!(".v{version}"))
        .ok_or_else(|| format!("{id} does not end in its version v{version}"))?
        .to_string();
    if let Some(local) = members.iter().find(|m| protocol(&m.url).is_none()) {
        return Err(format!(
            "its files are not served over a protocol the extension knows (https, http, s3): {}",
            local.url
        ));
    }
    let created: Vec<(String, &DatasetMember)> = members
        .iter()
        .map(|m| {
            m.creation_date
                .as_deref()
                .and_then(timestamp)
                .map(|c| (c, m))
                .ok_or_else(|| format!("{} has no creation_date timestamp", m.url))
        })
        .collect::<Result<_, _>>()?;
    let first_created = created.iter().map(|(c, _)| c).min().cloned();
    let last_created = created.iter().map(|(c, _)| c).max().cloned();
    let variable_id = global(combined, "variable_id").unwrap_or_default();
    let variable = combined
        .root
        .arrays
        .iter()
        .find(|a| a.name == variable_id)
        .ok_or_else(|| format!("the dataset has no variable '{variable_id}' (its variable_id)"))?;
    let variable_attr = |key: &str| -> Result<Value, String> {
        variable
            .attributes
            .get(key)
            .and_then(|v| v.as_str())
            .map(|s| json!(s))
            .ok_or_else(|| format!("variable '{variable_id}' has no {key} attribute"))
    };

    let mut out = item.clone();
    let props: &mut Map<String, Value> = out["properties"]
        .as_object_mut()
        .ok_or("the item has no properties")?;
    for key in LIST_ATTRIBUTES {
        if let Some(s) = global(combined, key) {
            let list: Vec<&str> = s.split_whitespace().collect();
            props.insert(format!("cmip6:{key}"), json!(list));
        }
    }
    for key in INDEX_ATTRIBUTES {
        let name = format!("cmip6:{key}");
        if let Some(n) = props.get(&name).and_then(Value::as_i64) {
            props.insert(name, json!(n.to_string()));
        }
    }
    // The schema names licences by SPDX id; the files state them in a sentence.
    match global(combined, "license").and_then(license_id) {
        Some(id) => props.insert("cmip6:license".into(), json!(id)),
        None => props.remove("cmip6:license"),
    };
    props.insert("cmip6:pid".into(), json!(pid));
    props.insert(
        "cmip6:variable_cf_standard_name".into(),
        variable_attr("standard_name")?,
    );
    props.insert(
        "cmip6:variable_long_name".into(),
        variable_attr("long_name")?,
    );
    props.insert("cmip6:variable_units".into(), variable_attr("units")?);
    props.insert("project".into(), json!("CMIP6"));
    props.insert("base_id".into(), json!(base_id));
    props.insert("version".into(), json!(version));
    props.insert("created".into(), json!(first_created));
    // The catalog stamps the time it received the item; without one (a static catalog,
    // rebuilt byte for byte) the dataset last changed when its newest file was made.
    props
        .entry("updated")
        .or_insert_with(|| json!(last_created));
    props.insert("latest".into(), json!(publication.latest));
    props.insert("retracted".into(), json!(publication.retracted));
    props.insert(
        "size".into(),
        json!(members.iter().map(|m| m.size).sum::<u64>()),
    );

    let by_key: std::collections::HashMap<&str, &str> = created
        .iter()
        .map(|(c, m)| (m.asset_key.as_str(), c.as_str()))
        .collect();
    let assets = out["assets"]
        .as_object_mut()
        .ok_or("the item has no assets")?;
    for (key, asset) in assets.iter_mut() {
        let href = asset["href"].as_str().unwrap_or_default().to_string();
        let (created, protocol) = match by_key.get(key.as_str()) {
            Some(c) => (c.to_string(), protocol(&href).unwrap_or("https")),
            // The virtual store: references written from every file there is.
            None => (last_created.clone().unwrap_or_default(), "kerchunk"),
        };
        asset["created"] = json!(created);
        asset["protocol"] = json!(protocol);
        if let Some(node) = &publication.data_node {
            asset["alternate:name"] = json!(node);
        }
    }

    let links = out["links"].as_array_mut().ok_or("the item has no links")?;
    links.push(json!({
        "rel": "cite-as",
        "href": publication.cite_as_template.replace("{instance_id}", &id),
        "type": "application/json",
        "title": "Citation URL",
    }));
    if let Some(info) = global(combined, "further_info_url")
        .filter(|u| u.starts_with("https://furtherinfo.es-doc.org/CMIP6"))
    {
        links.push(json!({
            "rel": "describedby",
            "href": info,
            "type": "text/html",
            "title": "ES-DOC",
        }));
    }

    let extensions = out["stac_extensions"]
        .as_array_mut()
        .ok_or("the item has no stac_extensions")?;
    for url in [FILE, ALTERNATE, CMIP6] {
        if !extensions.iter().any(|e| e == url) {
            extensions.push(json!(url));
        }
    }
    extensions.sort_unstable_by(|a, b| a.as_str().cmp(&b.as_str()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licence_sentences_become_spdx_ids() {
        let gfdl = "CMIP6 model data produced by NOAA-GFDL is licensed under a Creative Commons \
                    Attribution-ShareAlike 4.0 International License (https://creativecommons.org/licenses/).";
        assert_eq!(license_id(gfdl), Some("CC-BY-SA-4.0"));
        assert_eq!(
            license_id(
                "... Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International ..."
            ),
            Some("CC-BY-NC-SA-4.0")
        );
        assert_eq!(
            license_id("licensed under a Creative Commons Attribution 4.0 International License"),
            Some("CC-BY-4.0")
        );
        assert_eq!(license_id("see the terms of use"), None);
    }
}
