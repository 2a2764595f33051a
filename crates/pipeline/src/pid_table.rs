//! The PIDs of CMIP6 datasets, from `datasets.pid_table`: what ESGF's handle service
//! assigned, which no file carries.

use std::collections::HashMap;

use object_store::ObjectStoreExt;
use zarrstac_io::Location;

/// What the table says of one dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidEntry {
    pub pid: String,
    pub retracted: Option<bool>,
}

/// Dataset instance ids (with their version) to their PIDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidTable {
    entries: HashMap<String, PidEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum PidTableError {
    #[error("reading the PID table {url}: {message}")]
    Read { url: String, message: String },
    #[error("the PID table {url}, line {line}: {message}")]
    Csv {
        url: String,
        line: usize,
        message: String,
    },
    #[error("the PID table {url}: {message}")]
    Json { url: String, message: String },
}

fn flag(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

impl PidTable {
    /// Reads the table at `source` (a path or URL).
    pub async fn load(source: &str) -> Result<PidTable, PidTableError> {
        let read = |message: String| PidTableError::Read {
            url: source.to_string(),
            message,
        };
        let location = Location::parse(source).map_err(|e| read(e.to_string()))?;
        let bytes = location
            .store
            .get(&location.path)
            .await
            .map_err(|e| read(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| read(e.to_string()))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| read(format!("not UTF-8 ({e})")))?;
        PidTable::parse(&location.url, text)
    }

    /// A table from its text: a JSON object, else CSV lines.
    pub fn parse(url: &str, text: &str) -> Result<PidTable, PidTableError> {
        if text.trim_start().starts_with('{') {
            Self::parse_json(url, text)
        } else {
            Self::parse_csv(url, text)
        }
    }

    fn parse_json(url: &str, text: &str) -> Result<PidTable, PidTableError> {
        let json = |message: String| PidTableError::Json {
            url: url.to_string(),
            message,
        };
        let doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| json(e.to_string()))?;
        let mut entries = HashMap::with_capacity(doc.len());
        for (id, value) in doc {
            let entry = match &value {
                serde_json::Value::String(pid) => PidEntry {
                    pid: pid.clone(),
                    retracted: None,
                },
                serde_json::Value::Object(o) => PidEntry {
                    pid: o
                        .get("pid")
                        .and_then(|p| p.as_str())
                        .ok_or_else(|| json(format!("{id}: no \"pid\" string")))?
                        .to_string(),
                    retracted: match o.get("retracted") {
                        None | Some(serde_json::Value::Null) => None,
                        Some(serde_json::Value::Bool(b)) => Some(*b),
                        Some(other) => {
                            return Err(json(format!(
                                "{id}: \"retracted\" is {other}, not true or false"
                            )));
                        }
                    },
                },
                other => {
                    return Err(json(format!(
                        "{id}: {other} is neither a PID nor an object with one"
                    )));
                }
            };
            entries.insert(id, entry);
        }
        Ok(PidTable { entries })
    }

    fn parse_csv(url: &str, text: &str) -> Result<PidTable, PidTableError> {
        let mut entries = HashMap::new();
        for (k, line) in text.lines().enumerate() {
            let csv = |message: String| PidTableError::Csv {
                url: url.to_string(),
                line: k + 1,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Ids and handles hold no commas; quotes around a field are allowed.
            let fields: Vec<&str> = line
                .split(',')
                .map(|f| f.trim().trim_matches('"').trim())
                .collect();
            if k == 0 && fields[0].eq_ignore_ascii_case("dataset_id") {
                continue;
            }
            let (id, pid, retracted) = match fields.as_slice() {
                [id, pid] => (*id, *pid, None),
                [id, pid, r] => (
                    *id,
                    *pid,
                    Some(
                        flag(r)
                            .ok_or_else(|| csv(format!("retracted is '{r}', not true or false")))?,
                    ),
                ),
                _ => {
                    return Err(csv(format!(
                        "{} fields; expected dataset_id,pid[,retracted]",
                        fields.len()
                    )));
                }
            };
            if id.is_empty() || pid.is_empty() {
                return Err(csv("an empty dataset id or PID".into()));
            }
            entries.insert(
                id.to_string(),
                PidEntry {
                    pid: pid.to_string(),
                    retracted,
                },
            );
        }
        Ok(PidTable { entries })
    }

    /// What the table says of the dataset `instance_id` (with its version).
    pub fn get(&self, instance_id: &str) -> Option<&PidEntry> {
        self.entries.get(instance_id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a CMIP6 dataset's item states of its publication: what requests said of the
/// dataset first, then what the table lists for `instance_id`, then the configuration.
pub fn publication(
    instance_id: &str,
    said: &crate::stages::DatasetPublication,
    table: Option<&PidTable>,
    datasets: &crate::config::DatasetsConfig,
) -> zarrstac_stac::cmip6::Publication {
    let listed = table.and_then(|t| t.get(instance_id));
    zarrstac_stac::cmip6::Publication {
        pid: said.pid.clone().or_else(|| listed.map(|e| e.pid.clone())),
        retracted: said
            .retracted
            .or_else(|| listed.and_then(|e| e.retracted))
            .unwrap_or(false),
        // Superseded versions are removed when a newer one is published.
        latest: true,
        cite_as_template: datasets.cite_as_template.clone(),
        data_node: datasets.data_node.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "CMIP6.CMIP.NOAA-GFDL.GFDL-ESM4.historical.r1i1p1f1.Amon.o3.gr1.v20190726";
    const PID: &str = "hdl:21.14100/4f6ad4b8-7f8a-3c43-9a8e-8a1d5c1b0f2e";

    #[test]
    fn csv_tables_take_a_header_comments_quotes_and_a_retracted_column() {
        let text = format!(
            "dataset_id,pid,retracted\n# a comment\n\"{ID}\", {PID} ,false\nCMIP6.x.v1,hdl:21.14100/y,TRUE\n\n"
        );
        let t = PidTable::parse("file:///t.csv", &text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.get(ID),
            Some(&PidEntry {
                pid: PID.into(),
                retracted: Some(false)
            })
        );
        assert_eq!(t.get("CMIP6.x.v1").unwrap().retracted, Some(true));
        assert_eq!(t.get("CMIP6.x"), None);
    }

    #[test]
    fn json_tables_map_ids_to_pids_or_to_objects() {
        let text = format!(
            r#"{{"{ID}": "{PID}", "CMIP6.x.v1": {{"pid": "hdl:21.14100/y", "retracted": true}}}}"#
        );
        let t = PidTable::parse("file:///t.json", &text).unwrap();
        assert_eq!(t.get(ID).unwrap().pid, PID);
        assert_eq!(t.get(ID).unwrap().retracted, None);
        assert_eq!(t.get("CMIP6.x.v1").unwrap().retracted, Some(true));
    }

    #[test]
    fn a_request_says_more_than_the_table_and_the_table_more_than_nothing() {
        use crate::stages::DatasetPublication;
        let table = PidTable::parse("t.csv", &format!("{ID},{PID},true\n")).unwrap();
        let config = crate::config::DatasetsConfig::default();
        let nothing = DatasetPublication::default();
        let p = publication(ID, &nothing, Some(&table), &config);
        assert_eq!((p.pid.as_deref(), p.retracted), (Some(PID), true));
        let said = DatasetPublication {
            pid: Some("hdl:21.14100/other".into()),
            retracted: Some(false),
        };
        let p = publication(ID, &said, Some(&table), &config);
        assert_eq!(
            (p.pid.as_deref(), p.retracted),
            (Some("hdl:21.14100/other"), false)
        );
        let p = publication("CMIP6.unlisted.v1", &nothing, Some(&table), &config);
        assert_eq!((p.pid, p.retracted, p.latest), (None, false, true));
    }

    #[test]
    fn malformed_tables_are_refused_with_the_line_or_the_id() {
        let e = PidTable::parse("file:///t.csv", &format!("{ID},{PID}\n{ID}\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the PID table file:///t.csv, line 2: 1 fields; expected dataset_id,pid[,retracted]"
        );
        let e = PidTable::parse("file:///t.csv", &format!("{ID},{PID},maybe\n")).unwrap_err();
        assert!(
            e.to_string().contains("line 1: retracted is 'maybe'"),
            "{e}"
        );
        let e = PidTable::parse("file:///t.json", r#"{"a": 3}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains("a: 3 is neither a PID nor an object"),
            "{e}"
        );
        let e = PidTable::parse(
            "file:///t.json",
            r#"{"a": {"pid": "p", "retracted": "no"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not true or false"), "{e}");
    }
}
