//! The local dead-letter file: one JSON line per failed source, read by `replay`.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::failure::ErrorClass;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FailedRecord {
    pub source: String,
    pub error_class: String,
    pub message: String,
    pub time: String,
    pub attempt: u32,
}

impl FailedRecord {
    /// Whether the record passes replay's filters.
    pub fn selected(&self, filter: &ReplayFilter) -> bool {
        let time = chrono::DateTime::parse_from_rfc3339(&self.time).ok();
        filter
            .error_class
            .as_ref()
            .is_none_or(|c| c.eq_ignore_ascii_case(&self.error_class))
            && filter
                .glob
                .as_ref()
                .is_none_or(|g| g.is_match(&self.source))
            && filter.since.is_none_or(|s| time.is_some_and(|t| t >= s))
            && filter.until.is_none_or(|u| time.is_some_and(|t| t < u))
    }
}

/// Which dead-letter records `replay` moves back.
#[derive(Debug, Default)]
pub struct ReplayFilter {
    pub error_class: Option<String>,
    pub glob: Option<globset::GlobMatcher>,
    pub since: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub until: Option<chrono::DateTime<chrono::FixedOffset>>,
}

/// Every record of a dead-letter file, in order (none when it does not exist).
pub fn read_records(path: &str) -> anyhow::Result<Vec<FailedRecord>> {
    let path = path.strip_prefix("file://").unwrap_or(path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("{path}: {e}"),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(k, l)| {
            serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{path} line {}: {e}", k + 1))
        })
        .collect()
}

/// Replaces a dead-letter file's records at once (write aside, then rename), so a crash
/// leaves either the old or the new list, never half of one.
pub fn write_records(path: &str, records: &[FailedRecord]) -> anyhow::Result<()> {
    let path = PathBuf::from(path.strip_prefix("file://").unwrap_or(path));
    let aside = path.with_extension("jsonl.tmp");
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    std::fs::write(&aside, text)?;
    std::fs::rename(&aside, &path)?;
    Ok(())
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

    pub async fn record_failure(
        &self,
        source: &str,
        class: ErrorClass,
        message: &str,
    ) -> anyhow::Result<()> {
        let class = class.as_str().to_string();
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
