//! The local dead-letter file: one JSON line per failed source, read by `replay`.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::pipeline::ErrorClass;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct FailedRecord {
    pub source: String,
    pub error_class: String,
    pub message: String,
    pub time: String,
    pub attempt: u32,
}

/// Appends failure records, once per (source, class, message): re-running on the same
/// inputs adds nothing.
pub struct FailedLog {
    path: PathBuf,
    known: Mutex<Vec<(String, String, String)>>,
}

impl FailedLog {
    pub fn open(path: &str) -> anyhow::Result<FailedLog> {
        let path = PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
        let mut known = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Ok(r) = serde_json::from_str::<FailedRecord>(line) {
                    known.push((r.source, r.error_class, r.message));
                }
            }
        }
        Ok(FailedLog {
            path,
            known: Mutex::new(known),
        })
    }

    pub async fn record(
        &self,
        source: &str,
        class: ErrorClass,
        message: &str,
    ) -> anyhow::Result<()> {
        let class = serde_json::to_value(class)?
            .as_str()
            .unwrap_or("permanent")
            .to_string();
        let key = (source.to_string(), class.clone(), message.to_string());
        let mut known = self.known.lock().await;
        if known.contains(&key) {
            return Ok(());
        }
        let attempt = known.iter().filter(|k| k.0 == source).count() as u32 + 1;
        let record = FailedRecord {
            source: source.to_string(),
            error_class: class,
            message: message.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            attempt,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(f, "{}", serde_json::to_string(&record)?)?;
        known.push(key);
        Ok(())
    }
}
