//! Combining the references of many files of one dataset (a time series split into
//! files, as CMIP outputs are) into one virtual dataset along the time dimension.
//!
//! Each file's time values are decoded with its own units and calendar, and the
//! combined time coordinate is written once, inline. What would make the combined
//! array wrong is refused with an error naming the files: differing chunk shapes,
//! chunk boundaries that do not line up with file boundaries, differing packing or
//! fill values, dtypes or non-time dimensions, and overlapping times.

use std::sync::Arc;

use netcdf_reader::cf::time::{CfCalendar, CfDateTime, decode_time_exact, parse_time_units};
use zarrstac_model::{
    Array, AttrValue, ByteOrder, ChunkManifest, ChunkRef, DataType, Dataset, Group,
};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CombineError {
    #[error("nothing to combine")]
    Empty,
    #[error("{0}")]
    Refused(String),
}

fn refused(msg: impl Into<String>) -> CombineError {
    CombineError::Refused(msg.into())
}

/// Attributes whose values must agree between files for the data to decode the same.
const PACKING: &[&str] = &[
    "scale_factor",
    "add_offset",
    "missing_value",
    "units",
    "calendar",
];

fn attr_str<'a>(a: &'a Array, k: &str) -> Option<&'a str> {
    a.attributes.get(k).and_then(AttrValue::as_str)
}

fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// One file's time axis: its values, units and where its epoch lies.
struct TimeAxis {
    values: Vec<f64>,
    units: String,
    seconds_per_unit: f64,
    epoch: CfDateTime,
}

/// Seconds from `reference`'s epoch to `t`, in `reference`'s calendar: the whole days by
/// bisection over the calendar's own decoding (exact in every CF calendar), the rest from
/// the time of day.
fn seconds_since(
    t: &CfDateTime,
    calendar: CfCalendar,
    reference: &CfDateTime,
) -> Result<f64, String> {
    let units = format!(
        "days since {:04}-{:02}-{:02} 00:00:00",
        reference.year, reference.month, reference.day
    );
    let r = parse_time_units(&units, calendar).map_err(|e| e.to_string())?;
    let date_at = |d: i64| decode_time_exact(d as f64, &r).map(|x| (x.year, x.month, x.day));
    let target = (t.year, t.month, t.day);
    let (mut lo, mut hi) = (-20_000_000i64, 20_000_000i64);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if date_at(mid).map_err(|e| e.to_string())? < target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if date_at(lo).map_err(|e| e.to_string())? != target {
        return Err(format!(
            "{}-{}-{} is not a date of this calendar",
            t.year, t.month, t.day
        ));
    }
    let tod = |x: &CfDateTime| {
        x.hour as f64 * 3600.0
            + x.minute as f64 * 60.0
            + x.second as f64
            + x.nanosecond as f64 * 1e-9
    };
    Ok(lo as f64 * 86400.0 + tod(t) - tod(reference))
}

/// The record (time) dimension: the coordinate whose units say `<unit> since <date>`.
fn time_coordinate(d: &Dataset) -> Option<&Array> {
    d.root
        .arrays
        .iter()
        .find(|a| a.is_coordinate() && attr_str(a, "units").is_some_and(|u| u.contains(" since ")))
}

/// Combines the datasets (files of one dataset, in any order) along their time dimension.
/// The result does not depend on the order the files are given in.
pub fn combine(files: Vec<Dataset>) -> Result<Dataset, CombineError> {
    Combination::new(files).map(Combination::into_dataset)
}

/// A combined dataset together with what appending one more file at its end needs, so
/// that a dataset growing by a file costs one file's work, not a recombination of all.
/// Stored between runs (it is serializable); [`Combination::add`] gives exactly what
/// [`Combination::new`] over all the files would.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Combination {
    /// The earliest file as read: the template of the output and the reference every
    /// later file is checked against.
    base: Dataset,
    /// Name of the time dimension.
    time_dim: String,
    /// Every file's time values kept raw (all files share the earliest file's units).
    same_units: bool,
    /// The combined time values, in the earliest file's units.
    times: Vec<f64>,
    /// Every file, in time order.
    #[serde(with = "span_columns")]
    spans: Vec<Span>,
    combined: Dataset,
}

/// Where one file sits in a combination.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Span {
    url: String,
    /// Its start in seconds since the earliest file's epoch (the sort key).
    start: f64,
    /// Its first and last time values in the combined units.
    first: f64,
    last: f64,
    records: u64,
}

/// Spans stored column by column, their URLs front-coded (neighbours in time share
/// most of their URL).
mod span_columns {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use zarrstac_model::front_coded::strings;

    use super::Span;

    #[derive(Serialize)]
    struct Columns<'a> {
        #[serde(serialize_with = "strings::serialize")]
        urls: Vec<&'a str>,
        starts: Vec<f64>,
        firsts: Vec<f64>,
        lasts: Vec<f64>,
        records: Vec<u64>,
    }

    #[derive(Deserialize)]
    struct StoredColumns {
        #[serde(deserialize_with = "strings::deserialize")]
        urls: Vec<String>,
        starts: Vec<f64>,
        firsts: Vec<f64>,
        lasts: Vec<f64>,
        records: Vec<u64>,
    }

    pub fn serialize<S: Serializer>(spans: &[Span], s: S) -> Result<S::Ok, S::Error> {
        Columns {
            urls: spans.iter().map(|x| x.url.as_str()).collect(),
            starts: spans.iter().map(|x| x.start).collect(),
            firsts: spans.iter().map(|x| x.first).collect(),
            lasts: spans.iter().map(|x| x.last).collect(),
            records: spans.iter().map(|x| x.records).collect(),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Span>, D::Error> {
        let c = StoredColumns::deserialize(d)?;
        let n = c.urls.len();
        if [
            c.starts.len(),
            c.firsts.len(),
            c.lasts.len(),
            c.records.len(),
        ] != [n; 4]
        {
            return Err(serde::de::Error::custom(
                "span columns of different lengths",
            ));
        }
        Ok(c.urls
            .into_iter()
            .zip(c.starts)
            .zip(c.firsts)
            .zip(c.lasts)
            .zip(c.records)
            .map(|((((url, start), first), last), records)| Span {
                url,
                start,
                first,
                last,
                records,
            })
            .collect())
    }
}

/// One file's time axis read for combining.
fn file_axis(f: &Dataset, time_dim: &str, calendar: CfCalendar) -> Result<TimeAxis, CombineError> {
    let name = file_name(&f.source_url);
    let t = f
        .root
        .arrays
        .iter()
        .find(|a| a.name == time_dim)
        .ok_or_else(|| refused(format!("{name}: has no '{time_dim}' coordinate")))?;
    let units = attr_str(t, "units").unwrap_or_default().to_string();
    let seconds_per_unit = zarrstac_cf::unit_seconds(&units).ok_or_else(|| {
        refused(format!(
            "{name}: time units '{units}' are not seconds, minutes, hours or days"
        ))
    })?;
    let reference =
        zarrstac_cf::parse_units(&units, calendar).map_err(|e| refused(format!("{name}: {e}")))?;
    let values = t
        .coordinate_values
        .clone()
        .ok_or_else(|| refused(format!("{name}: time values were not read")))?;
    Ok(TimeAxis {
        values,
        units,
        seconds_per_unit,
        epoch: reference.epoch,
    })
}

fn calendar_of(a: &Array) -> String {
    attr_str(a, "calendar")
        .unwrap_or("standard")
        .to_ascii_lowercase()
}

fn records(f: &Dataset, time_dim: &str) -> u64 {
    f.root
        .arrays
        .iter()
        .find(|a| a.name == time_dim)
        .map_or(0, |a| a.shape[0])
}

impl Combination {
    /// The combined dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.combined
    }

    pub fn into_dataset(self) -> Dataset {
        self.combined
    }

    /// Adds `file` where its time places it — after the earliest file, which is the
    /// template of the whole — when it agrees with the files combined so far and neither
    /// overlaps its neighbours nor leaves a partial chunk before another file. `Ok(false)`
    /// (nothing changed) otherwise: then only combining all files anew can place it or
    /// say why it cannot be combined. The result is what [`Combination::new`] over all
    /// the files gives.
    pub fn add(&mut self, file: Dataset) -> Result<bool, CombineError> {
        self.add_all(vec![file])
    }

    /// Adds `files` (any order) as [`Combination::add`] would one after another, in one
    /// pass over the combination whatever their number: each file is placed among the
    /// files combined so far and the others given. `Ok(false)` (nothing changed) when
    /// one of them cannot be placed so.
    pub fn add_all(&mut self, files: Vec<Dataset>) -> Result<bool, CombineError> {
        let Some(plan) = self.plan(files) else {
            return Ok(false);
        };
        self.apply(plan)?;
        Ok(true)
    }

    /// Where each file goes and what it brings, checked against its neighbours in the
    /// final order; `None` when one cannot be placed.
    fn plan(&self, files: Vec<Dataset>) -> Option<Vec<Placed>> {
        let base_time = self
            .base
            .root
            .arrays
            .iter()
            .find(|a| a.name == self.time_dim)?;
        let calendar = CfCalendar::parse(&calendar_of(base_time));
        let base_units = attr_str(base_time, "units").unwrap_or_default();
        let base_seconds = zarrstac_cf::unit_seconds(base_units).unwrap_or(1.0);
        let base_ref = zarrstac_cf::parse_units(base_units, calendar).ok()?;
        if !self.combined.refused.is_empty() {
            return None;
        }
        // Bounds rewritten in the combined units are rebuilt with the whole combination.
        if !self.same_units
            && time_bounds_name(std::slice::from_ref(&self.base), &self.time_dim).is_some()
        {
            return None;
        }
        let mut placed = Vec::with_capacity(files.len());
        for file in files {
            let new_time = file.root.arrays.iter().find(|a| a.name == self.time_dim)?;
            if CfCalendar::parse(&calendar_of(new_time)) != calendar || !file.refused.is_empty() {
                return None;
            }
            let axis = file_axis(&file, &self.time_dim, calendar).ok()?;
            let offset = seconds_since(&axis.epoch, calendar, &base_ref.epoch).ok()?;
            let earliest = axis.values.iter().copied().fold(f64::INFINITY, f64::min);
            let start = offset + earliest * axis.seconds_per_unit;
            // Raw values stay raw only while every file has the same units.
            if self.same_units && axis.units != base_units {
                return None;
            }
            let values: Vec<f64> = if self.same_units {
                axis.values
            } else {
                axis.values
                    .iter()
                    .map(|v| (offset + v * axis.seconds_per_unit) / base_seconds)
                    .collect()
            };
            let (Some(&first), Some(&last)) = (values.first(), values.last()) else {
                return None;
            };
            if values.windows(2).any(|w| w[1] <= w[0]) {
                return None;
            }
            let records = records(&file, &self.time_dim);
            placed.push(Placed {
                at: 0,
                span: Span {
                    url: file.source_url.clone(),
                    start,
                    first,
                    last,
                    records,
                },
                values,
                file,
            });
        }
        placed.sort_by(|a, b| {
            (a.span.start, a.span.url.as_str())
                .partial_cmp(&(b.span.start, b.span.url.as_str()))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        // A file already combined, or given twice, is not added.
        {
            let urls: hashbrown::HashSet<&str> =
                placed.iter().map(|p| p.span.url.as_str()).collect();
            let combined = |url: &str| match placed.as_slice() {
                [one] => one.span.url == url,
                _ => urls.contains(url),
            };
            if urls.len() != placed.len() || self.spans.iter().any(|s| combined(&s.url)) {
                return None;
            }
        }
        // Its place: after every combined file that sorts before it (by start, then URL);
        // new files of one place in their own order. A new first file would be a new
        // template.
        for p in &mut placed {
            let key = (p.span.start, p.span.url.as_str());
            p.at = self
                .spans
                .partition_point(|s| (s.start, s.url.as_str()) < key);
            if p.at == 0 {
                return None;
            }
        }
        for k in 0..placed.len() {
            let at = placed[k].at;
            let before = match k.checked_sub(1).filter(|&j| placed[j].at == at) {
                Some(j) => &placed[j].span,
                None => &self.spans[at - 1],
            };
            let after = match placed.get(k + 1).filter(|next| next.at == at) {
                Some(next) => Some(&next.span),
                None => self.spans.get(at),
            };
            let this = &placed[k];
            if this.span.first < before.last || after.is_some_and(|a| a.first < this.span.last) {
                return None;
            }
            for base in &self.base.root.arrays {
                let along_time = base.dimensions.first().is_some_and(|d| d == &self.time_dim);
                let other = this.file.root.arrays.iter().find(|a| a.name == base.name)?;
                check_compatible(
                    base,
                    other,
                    &self.base.source_url,
                    &this.file.source_url,
                    along_time,
                )
                .ok()?;
                // Only the last file may end on a partial chunk.
                let c = base.chunk_shape.first().copied().unwrap_or(1).max(1);
                if along_time
                    && base.name != self.time_dim
                    && (!before.records.is_multiple_of(c)
                        || (after.is_some() && !this.span.records.is_multiple_of(c)))
                {
                    return None;
                }
            }
        }
        Some(placed)
    }

    /// Puts the planned files in: spans, time values and every array along time, in one
    /// merge of the combined files and the new ones in time order.
    fn apply(&mut self, placed: Vec<Placed>) -> Result<(), CombineError> {
        let base_units = self
            .base
            .root
            .arrays
            .iter()
            .find(|a| a.name == self.time_dim)
            .and_then(|a| attr_str(a, "units"))
            .unwrap_or_default()
            .to_string();
        let appended = placed.iter().all(|p| p.at == self.spans.len());
        let old_spans = std::mem::take(&mut self.spans);
        let old_times = std::mem::take(&mut self.times);
        let new_values: usize = placed.iter().map(|p| p.values.len()).sum();
        let mut order: Vec<Slot> = Vec::with_capacity(old_spans.len() + placed.len());
        let mut spans = Vec::with_capacity(old_spans.len() + placed.len());
        let mut times = Vec::with_capacity(old_times.len() + new_values);
        let mut files: Vec<Dataset> = Vec::with_capacity(placed.len());
        let mut new = placed.into_iter().enumerate().peekable();
        let mut old_start = 0u64;
        let mut old = old_spans.into_iter().enumerate().peekable();
        loop {
            // New files of place `j` go before combined span `j`.
            let next_old = old.peek().map(|(j, _)| *j);
            match new.next_if(|(_, p)| next_old.is_none_or(|j| p.at <= j)) {
                Some((k, p)) => {
                    self.combined.source_size += p.file.source_size;
                    times.extend_from_slice(&p.values);
                    order.push(Slot::New {
                        file: k,
                        records: p.span.records,
                    });
                    spans.push(p.span);
                    files.push(p.file);
                }
                None => {
                    let Some((_, span)) = old.next() else { break };
                    let from = old_start as usize;
                    let to = from + span.records as usize;
                    times.extend_from_slice(old_times.get(from..to).unwrap_or(&[]));
                    order.push(Slot::Old {
                        start: old_start,
                        records: span.records,
                    });
                    old_start += span.records;
                    spans.push(span);
                }
            }
        }
        self.spans = spans;
        self.times = times;
        let total = self.times.len() as u64;
        for (k, base) in self.base.root.arrays.iter().enumerate() {
            let out = &mut self.combined.root.arrays[k];
            if base.name == self.time_dim {
                *out = time_array(base, &self.times, self.same_units, &base_units);
                continue;
            }
            if base.dimensions.first().is_none_or(|d| d != &self.time_dim) {
                continue;
            }
            let c = base.chunk_shape[0].max(1);
            out.shape[0] = total;
            let part = |k: usize| {
                files[k]
                    .root
                    .arrays
                    .iter()
                    .find(|a| a.name == base.name)
                    .map(|a| &a.manifest)
            };
            if appended {
                // Last in time: nothing to move.
                let mut records = old_start;
                for slot in &order {
                    if let Slot::New { file, records: n } = *slot {
                        if let Some(m) = part(file) {
                            shift_chunks(&mut out.manifest, m, |_| true, records / c)?;
                        }
                        records += n;
                    }
                }
                continue;
            }
            let old = std::mem::take(&mut out.manifest);
            let new_chunks: usize = (0..files.len()).filter_map(part).map(|m| m.len()).sum();
            let mut manifest = ChunkManifest::with_capacity(old.ndim(), old.len() + new_chunks);
            // The combined chunks grouped by the file they belong to (by their first
            // index), so that each group is moved once, in the final order: the order
            // (and path numbering) a combination of all files in time order has.
            let old_firsts: Vec<u64> = order
                .iter()
                .filter_map(|s| match s {
                    Slot::Old { start, .. } => Some(start / c),
                    Slot::New { .. } => None,
                })
                .collect();
            let mut groups: Vec<Vec<usize>> = vec![Vec::new(); old_firsts.len()];
            let entries: Vec<(&[u64], &ChunkRef)> = old.iter().collect();
            for (e, (key, _)) in entries.iter().enumerate() {
                let g = old_firsts
                    .partition_point(|&s| s <= key[0])
                    .saturating_sub(1);
                if let Some(group) = groups.get_mut(g) {
                    group.push(e);
                }
            }
            let mut records = 0u64;
            let mut g = 0;
            for slot in &order {
                match *slot {
                    Slot::New { file, records: n } => {
                        if let Some(m) = part(file) {
                            shift_chunks(&mut manifest, m, |_| true, records / c)?;
                        }
                        records += n;
                    }
                    Slot::Old { start, records: n } => {
                        let by = records / c - start / c;
                        for &e in &groups[g] {
                            let (key, chunk) = entries[e];
                            move_chunk(&mut manifest, &old, key, chunk, by)?;
                        }
                        records += n;
                        g += 1;
                    }
                }
            }
            out.manifest = manifest;
        }
        Ok(())
    }

    /// Combines the files (in any order) along their time dimension.
    pub fn new(mut files: Vec<Dataset>) -> Result<Combination, CombineError> {
        if files.is_empty() {
            return Err(CombineError::Empty);
        }
        let first_time = time_coordinate(&files[0]).ok_or_else(|| {
            refused(format!(
                "{}: no time coordinate (a coordinate with units '<unit> since <date>')",
                file_name(&files[0].source_url)
            ))
        })?;
        let time_dim = first_time.name.clone();
        let calendar_name = calendar_of(first_time);
        let calendar = CfCalendar::parse(&calendar_name);

        // Each file's time axis.
        let mut axes = Vec::with_capacity(files.len());
        for f in &files {
            if let Some(t) = f.root.arrays.iter().find(|a| a.name == time_dim) {
                let cal = calendar_of(t);
                if CfCalendar::parse(&cal) != calendar {
                    return Err(refused(format!(
                        "calendars differ: {} uses '{calendar_name}', {} uses '{cal}'",
                        file_name(&files[0].source_url),
                        file_name(&f.source_url)
                    )));
                }
            }
            axes.push(file_axis(f, &time_dim, calendar)?);
        }

        // Order the files by time, deterministically: the earliest file's units become the
        // combined units, whatever order the files came in.
        let probe = axes[0].epoch;
        let mut starts = Vec::with_capacity(files.len());
        for (f, a) in files.iter().zip(&axes) {
            let offset = seconds_since(&a.epoch, calendar, &probe)
                .map_err(|e| refused(format!("{}: {e}", file_name(&f.source_url))))?;
            let first = a.values.iter().copied().fold(f64::INFINITY, f64::min);
            starts.push(offset + first * a.seconds_per_unit);
        }
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by(|&i, &j| {
            starts[i]
                .partial_cmp(&starts[j])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| files[i].source_url.cmp(&files[j].source_url))
        });
        let mut sorted_files = Vec::with_capacity(files.len());
        let mut sorted_axes = Vec::with_capacity(files.len());
        let mut taken: Vec<Option<(Dataset, TimeAxis)>> =
            files.drain(..).zip(axes).map(Some).collect();
        for i in order {
            let (f, a) = taken[i].take().expect("each index once");
            sorted_files.push(f);
            sorted_axes.push(a);
        }
        let files = sorted_files;
        let axes = sorted_axes;

        // Combined time values in the earliest file's units.
        let reference = axes[0].epoch;
        let same_units = axes.iter().all(|a| a.units == axes[0].units);
        // Only bounds that exist: files trimmed for distribution name a bounds variable
        // they do not hold, and their time coordinate combines like any other. Bounds
        // that exist are in each file's units: rewritten with the time values.
        let bounds_name = time_bounds_name(&files, &time_dim);
        let rewrite_bounds = if same_units { None } else { bounds_name };
        let mut combined_bounds: Vec<f64> = Vec::new();
        let mut combined: Vec<f64> = Vec::new();
        let mut bounds: Vec<(f64, f64)> = Vec::new();
        let mut spans = Vec::with_capacity(files.len());
        for (f, a) in files.iter().zip(&axes) {
            let name = file_name(&f.source_url);
            let offset = seconds_since(&a.epoch, calendar, &reference)
                .map_err(|e| refused(format!("{name}: {e}")))?;
            let earliest = a.values.iter().copied().fold(f64::INFINITY, f64::min);
            let converted: Vec<f64> = if same_units {
                a.values.clone()
            } else {
                a.values
                    .iter()
                    .map(|v| (offset + v * a.seconds_per_unit) / axes[0].seconds_per_unit)
                    .collect()
            };
            if converted.windows(2).any(|w| w[1] <= w[0]) {
                return Err(refused(format!(
                    "{name}: time values are not strictly increasing"
                )));
            }
            if let Some(b) = &rewrite_bounds {
                let values = f
                    .root
                    .arrays
                    .iter()
                    .find(|x| &x.name == b)
                    .filter(|x| x.shape.first() == Some(&(a.values.len() as u64)))
                    .and_then(|x| x.coordinate_values.as_deref())
                    .filter(|v| v.len() % a.values.len().max(1) == 0)
                    .ok_or_else(|| {
                        refused(format!(
                            "time units differ between files ({}) and the time bounds '{b}' of {name} were not read, so they cannot be rewritten; combining them by reference would mix units",
                            axes.iter()
                                .map(|a| a.units.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                combined_bounds.extend(
                    values
                        .iter()
                        .map(|v| (offset + v * a.seconds_per_unit) / axes[0].seconds_per_unit),
                );
            }
            if let (Some(&lo), Some(&hi)) = (converted.first(), converted.last()) {
                bounds.push((lo, hi));
            }
            spans.push(Span {
                url: f.source_url.clone(),
                start: offset + earliest * a.seconds_per_unit,
                first: converted.first().copied().unwrap_or(f64::NEG_INFINITY),
                last: converted.last().copied().unwrap_or(f64::NEG_INFINITY),
                records: a.values.len() as u64,
            });
            combined.extend(converted);
        }
        for (k, w) in bounds.windows(2).enumerate() {
            // A file may repeat the instant its predecessor ended on (xarray keeps both, and
            // so do we); starting before that instant is an overlap.
            if w[1].0 < w[0].1 {
                return Err(refused(format!(
                    "overlapping times: {} ends at {} but {} starts at {} ({} units)",
                    file_name(&files[k].source_url),
                    w[0].1,
                    file_name(&files[k + 1].source_url),
                    w[1].0,
                    axes[0].units
                )));
            }
        }

        let mut out = files[0].clone();
        out.source_url = files[0].source_url.clone();
        out.source_size = files.iter().map(|f| f.source_size).sum();
        let lengths: Vec<u64> = files
            .iter()
            .map(|f| {
                f.root
                    .arrays
                    .iter()
                    .find(|a| a.name == time_dim)
                    .map_or(0, |a| a.shape[0])
            })
            .collect();
        let total: u64 = lengths.iter().sum();

        let mut arrays = Vec::with_capacity(out.root.arrays.len());
        for base in &files[0].root.arrays {
            let along_time = base.dimensions.first().is_some_and(|d| d == &time_dim);
            let others: Vec<&Array> = files[1..]
                .iter()
                .map(|f| {
                    f.root
                        .arrays
                        .iter()
                        .find(|a| a.name == base.name)
                        .ok_or_else(|| {
                            refused(format!(
                                "variable '{}' is in {} but not in {}",
                                base.name,
                                file_name(&files[0].source_url),
                                file_name(&f.source_url)
                            ))
                        })
                })
                .collect::<Result<_, _>>()?;
            for (o, f) in others.iter().zip(&files[1..]) {
                check_compatible(base, o, &files[0].source_url, &f.source_url, along_time)?;
            }
            if base.name == time_dim {
                arrays.push(time_array(base, &combined, same_units, &axes[0].units));
                continue;
            }
            if rewrite_bounds.as_deref() == Some(base.name.as_str()) {
                arrays.push(bounds_array(base, &combined_bounds, &axes[0].units));
                continue;
            }
            if !along_time {
                arrays.push(base.clone());
                continue;
            }
            arrays.push(concat(base, &others, &files, &lengths, total)?);
        }
        out.root = Group {
            name: String::new(),
            attributes: files[0].root.attributes.clone(),
            groups: Vec::new(),
            arrays,
        };
        out.refused = files.iter().flat_map(|f| f.refused.clone()).collect();
        out.refused.dedup();
        for (s, n) in spans.iter_mut().zip(&lengths) {
            s.records = *n;
        }
        Ok(Combination {
            time_dim: time_dim.clone(),
            same_units,
            times: combined,
            spans,
            base: files.into_iter().next().expect("not empty"),
            combined: out,
        })
    }
}

/// Fill values are equal when they are the same value; NaN is one value here.
fn same_fill(a: &Option<zarrstac_model::FillValue>, b: &Option<zarrstac_model::FillValue>) -> bool {
    use zarrstac_model::FillValue::Float;
    match (a, b) {
        (Some(Float(x)), Some(Float(y))) => x == y || (x.is_nan() && y.is_nan()),
        _ => a == b,
    }
}

fn check_compatible(
    a: &Array,
    b: &Array,
    ua: &str,
    ub: &str,
    along_time: bool,
) -> Result<(), CombineError> {
    let (na, nb) = (file_name(ua), file_name(ub));
    let v = &a.name;
    if a.dtype != b.dtype {
        return Err(refused(format!(
            "variable '{v}': dtype {} in {na} but {} in {nb}",
            crate::kerchunk::numpy_dtype(&a.dtype),
            crate::kerchunk::numpy_dtype(&b.dtype)
        )));
    }
    if a.dimensions != b.dimensions {
        return Err(refused(format!(
            "variable '{v}': dimensions {:?} in {na} but {:?} in {nb}",
            a.dimensions, b.dimensions
        )));
    }
    // The time coordinate is decoded and rewritten, so how each file stored it is moot.
    let rewritten = along_time && a.is_coordinate();
    let skip = usize::from(along_time);
    if a.shape[skip.min(a.shape.len())..] != b.shape[skip.min(b.shape.len())..] {
        return Err(refused(format!(
            "variable '{v}': shape {:?} in {na} but {:?} in {nb}",
            a.shape, b.shape
        )));
    }
    if along_time && !rewritten && a.chunk_shape != b.chunk_shape {
        return Err(refused(format!(
            "variable '{v}': chunk shapes differ, {:?} in {na} but {:?} in {nb}: one regular Zarr chunk grid cannot hold both",
            a.chunk_shape, b.chunk_shape
        )));
    }
    if rewritten {
        return Ok(());
    }
    if a.codecs != b.codecs {
        return Err(refused(format!(
            "variable '{v}': codecs differ between {na} and {nb}"
        )));
    }
    if !same_fill(&a.fill_value, &b.fill_value) {
        let show = |f: &Option<zarrstac_model::FillValue>| match f {
            Some(zarrstac_model::FillValue::Int(i)) => i.to_string(),
            Some(zarrstac_model::FillValue::UInt(u)) => u.to_string(),
            Some(zarrstac_model::FillValue::Float(x)) => format!("{x:?}"),
            Some(zarrstac_model::FillValue::Bytes(b)) => format!("{b:?}"),
            None => "(none)".into(),
        };
        return Err(refused(format!(
            "variable '{v}': _FillValue {} in {na} but {} in {nb}",
            show(&a.fill_value),
            show(&b.fill_value)
        )));
    }
    for k in PACKING {
        if *k == "units" && a.dimensions.len() == 1 && a.dimensions[0] == a.name && along_time {
            continue; // the time coordinate itself is re-encoded
        }
        let is_time_bounds = along_time && (*k == "units" || *k == "calendar");
        if is_time_bounds
            && a.attributes
                .get(*k)
                .and_then(AttrValue::as_str)
                .is_some_and(|u| u.contains(" since "))
        {
            continue; // checked with the time axis
        }
        // Compared as written (so NaN equals NaN, as the values mean the same thing).
        let text = |x: Option<&AttrValue>| x.map(crate::kerchunk::attr_text);
        if text(a.attributes.get(*k)) != text(b.attributes.get(*k)) {
            let show =
                |x: Option<&AttrValue>| x.map_or("(none)".to_string(), crate::kerchunk::attr_text);
            return Err(refused(format!(
                "variable '{v}': {k} {} in {na} but {} in {nb}: the combined data would decode wrongly",
                show(a.attributes.get(*k)),
                show(b.attributes.get(*k))
            )));
        }
    }
    Ok(())
}

/// The combined time coordinate, inline: raw values when every file had the same units,
/// otherwise float64 values in the earliest file's units.
fn time_array(base: &Array, values: &[f64], same_units: bool, units: &str) -> Array {
    let mut a = base.clone();
    let (dtype, bytes): (DataType, Vec<u8>) = match (&base.dtype, same_units) {
        (
            DataType::Int {
                bytes: 4,
                signed: true,
                ..
            },
            true,
        ) => (
            DataType::Int {
                bytes: 4,
                signed: true,
                order: ByteOrder::Little,
            },
            values
                .iter()
                .flat_map(|v| (*v as i32).to_le_bytes())
                .collect(),
        ),
        (DataType::Float { bytes: 4, .. }, true) => (
            DataType::Float {
                bytes: 4,
                order: ByteOrder::Little,
            },
            values
                .iter()
                .flat_map(|v| (*v as f32).to_le_bytes())
                .collect(),
        ),
        _ => (
            DataType::Float {
                bytes: 8,
                order: ByteOrder::Little,
            },
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    };
    a.dtype = dtype;
    a.shape = vec![values.len() as u64];
    a.chunk_shape = vec![(values.len() as u64).max(1)];
    a.codecs = Vec::new();
    a.fill_value = None;
    a.attributes
        .insert("units".into(), AttrValue::String(units.to_string()));
    let mut m = ChunkManifest::new(1);
    if !values.is_empty() {
        let _ = m.push(&[0], ChunkRef::Inline(Arc::from(bytes.into_boxed_slice())));
    }
    a.manifest = m;
    a.coordinate_values = Some(values.to_vec());
    a.materialized =
        Some("combined time coordinate, decoded from each file and written once".into());
    a
}

/// The variable the time coordinate names as its `bounds`, when a file holds it.
fn time_bounds_name(files: &[Dataset], time_dim: &str) -> Option<String> {
    let time = files[0].root.arrays.iter().find(|a| a.name == time_dim)?;
    let b = attr_str(time, "bounds")?;
    files
        .iter()
        .any(|f| f.root.arrays.iter().any(|a| a.name == b))
        .then(|| b.to_string())
}

/// The time bounds rewritten in the combined units, inline as float64 (they are as small
/// as the time coordinate).
fn bounds_array(base: &Array, values: &[f64], units: &str) -> Array {
    let mut a = base.clone();
    let vertices = base.shape.get(1).copied().unwrap_or(2).max(1);
    let cells = values.len() as u64 / vertices;
    a.dtype = DataType::Float {
        bytes: 8,
        order: ByteOrder::Little,
    };
    a.shape = vec![cells, vertices];
    a.chunk_shape = vec![cells.max(1), vertices];
    a.codecs = Vec::new();
    a.fill_value = None;
    // CF bounds take the coordinate's units; one that states its own gets the new ones.
    if a.attributes.contains_key("units") {
        a.attributes
            .insert("units".into(), AttrValue::String(units.to_string()));
    }
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut m = ChunkManifest::new(2);
    if !values.is_empty() {
        let _ = m.push(
            &[0, 0],
            ChunkRef::Inline(Arc::from(bytes.into_boxed_slice())),
        );
    }
    a.manifest = m;
    a.coordinate_values = Some(values.to_vec());
    a.materialized = Some(
        "combined time bounds, decoded from each file and written once in the combined units"
            .into(),
    );
    a
}

/// An array along time: each file's chunks, shifted by the records before it.
fn concat(
    base: &Array,
    others: &[&Array],
    files: &[Dataset],
    lengths: &[u64],
    total: u64,
) -> Result<Array, CombineError> {
    let c = base.chunk_shape[0].max(1);
    for (k, n) in lengths
        .iter()
        .enumerate()
        .take(lengths.len().saturating_sub(1))
    {
        if n % c != 0 {
            return Err(refused(format!(
                "variable '{}': {} has {n} records but chunks of {c} along time, so its last chunk is partial and the chunks of {} would not start on the chunk grid",
                base.name,
                file_name(&files[k].source_url),
                file_name(&files[k + 1].source_url)
            )));
        }
    }
    let parts: Vec<&Array> = std::iter::once(base)
        .chain(others.iter().copied())
        .collect();
    let ndim = base.shape.len();
    let capacity: usize = parts.iter().map(|p| p.manifest.len()).sum();
    let mut manifest = ChunkManifest::with_capacity(ndim, capacity);
    let mut first_chunk = 0u64;
    for (part, n) in parts.iter().zip(lengths) {
        shift_chunks(&mut manifest, &part.manifest, |_| true, first_chunk)?;
        first_chunk += n / c;
    }
    let mut a = base.clone();
    a.shape[0] = total;
    a.manifest = manifest;
    Ok(a)
}

/// Adds the chunks of `from` whose index along time passes `keep` to `manifest`, moved
/// `by` chunks along time, in their order.
/// A file planned into a combination.
struct Placed {
    /// Before which combined span it goes.
    at: usize,
    span: Span,
    /// Its time values in the combination's units.
    values: Vec<f64>,
    file: Dataset,
}

/// One file of a combination being merged: a combined one (its first record before the
/// merge) or a new one.
#[derive(Clone, Copy)]
enum Slot {
    Old { start: u64, records: u64 },
    New { file: usize, records: u64 },
}

/// Copies one chunk of `from` into `manifest`, `by` chunks later along time.
fn move_chunk(
    manifest: &mut ChunkManifest,
    from: &ChunkManifest,
    key: &[u64],
    chunk: &ChunkRef,
    by: u64,
) -> Result<(), CombineError> {
    let mut index = key.to_vec();
    index[0] += by;
    let moved = match chunk {
        ChunkRef::Range {
            path,
            offset,
            length,
        } => ChunkRef::Range {
            path: manifest.path_id(&from.paths()[*path as usize]),
            offset: *offset,
            length: *length,
        },
        inline => inline.clone(),
    };
    manifest
        .push(&index, moved)
        .map_err(|e| refused(e.to_string()))
}

fn shift_chunks(
    manifest: &mut ChunkManifest,
    from: &ChunkManifest,
    keep: impl Fn(u64) -> bool,
    by: u64,
) -> Result<(), CombineError> {
    for (key, chunk) in from.iter() {
        if keep(key[0]) {
            move_chunk(manifest, from, key, chunk, by)?;
        }
    }
    Ok(())
}

/// The dataset a file belongs to, from its global attributes: the CMIP6 DRS id
/// (`CMIP6.<activity>.<institution>.<source>.<experiment>.<member>.<table>.<variable>.<grid>`),
/// or the CMIP5 one (`CMIP5.<product>.<institute>.<model>.<experiment>.<frequency>.<realm>.<table>.<ensemble>`
/// plus the variable). `None` when the file does not say.
pub fn dataset_id(d: &Dataset) -> Option<String> {
    let g = |k: &str| {
        d.root
            .attributes
            .get(k)
            .and_then(AttrValue::as_str)
            .map(str::to_string)
    };
    if g("mip_era").as_deref() == Some("CMIP6") {
        let member = match (g("sub_experiment_id"), g("variant_label")) {
            (Some(s), Some(v)) if s != "none" => format!("{s}-{v}"),
            (_, v) => v?,
        };
        let parts = [
            g("activity_id")?,
            g("institution_id")?,
            g("source_id")?,
            g("experiment_id")?,
            member,
            g("table_id")?,
            g("variable_id")?,
            g("grid_label")?,
        ];
        return Some(format!("CMIP6.{}", parts.join(".")));
    }
    if g("project_id").as_deref() == Some("CMIP5") {
        let ensemble = format!(
            "r{}i{}p{}",
            num(d, "realization")?,
            num(d, "initialization_method")?,
            num(d, "physics_version")?
        );
        let table = g("table_id")?
            .split_whitespace()
            .nth(1)
            .map(str::to_string)?;
        let variable = d
            .root
            .arrays
            .iter()
            .find(|a| {
                a.dimensions.len() >= 2
                    && !a.is_coordinate()
                    && attr_str(a, "bounds").is_none()
                    && !a.name.ends_with("_bnds")
            })
            .map(|a| a.name.clone())?;
        let parts = [
            g("product")?,
            g("institute_id")?,
            g("model_id")?,
            g("experiment_id")?,
            g("frequency")?,
            g("modeling_realm")?,
            table,
            ensemble,
            variable,
        ];
        return Some(format!("CMIP5.{}", parts.join(".")));
    }
    None
}

fn num(d: &Dataset, k: &str) -> Option<i64> {
    d.root
        .attributes
        .get(k)
        .and_then(AttrValue::as_f64)
        .map(|f| f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zarrstac_model::{Attributes, ChunkManifest, SourceFormat};

    fn f64le() -> DataType {
        DataType::Float {
            bytes: 8,
            order: ByteOrder::Little,
        }
    }

    /// A file with `time(time)` and `tas(time, x)` chunked `chunk` records at a time.
    fn file(url: &str, times: &[f64], units: &str, chunk: u64) -> Dataset {
        let n = times.len() as u64;
        let mut time_attrs = Attributes::new();
        time_attrs.insert("units".into(), AttrValue::String(units.into()));
        time_attrs.insert("calendar".into(), AttrValue::String("noleap".into()));
        let mut tm = ChunkManifest::new(1);
        let p = tm.path_id(url);
        tm.push(
            &[0],
            ChunkRef::Range {
                path: p,
                offset: 0,
                length: n * 8,
            },
        )
        .unwrap();
        let time = Array {
            name: "time".into(),
            dtype: f64le(),
            shape: vec![n],
            chunk_shape: vec![n],
            dimensions: vec!["time".into()],
            codecs: vec![],
            fill_value: None,
            attributes: time_attrs,
            manifest: tm,
            materialized: None,
            coordinate_values: Some(times.to_vec()),
            grid_extent: None,
        };
        let mut m = ChunkManifest::new(2);
        let p = m.path_id(url);
        for k in 0..n.div_ceil(chunk) {
            m.push(
                &[k, 0],
                ChunkRef::Range {
                    path: p,
                    offset: 1000 + k * 100,
                    length: 100,
                },
            )
            .unwrap();
        }
        let mut attrs = Attributes::new();
        attrs.insert(
            "scale_factor".into(),
            AttrValue::Float {
                values: vec![0.5],
                bits: 32,
            },
        );
        let tas = Array {
            name: "tas".into(),
            dtype: DataType::Int {
                bytes: 2,
                signed: true,
                order: ByteOrder::Little,
            },
            shape: vec![n, 3],
            chunk_shape: vec![chunk, 3],
            dimensions: vec!["time".into(), "x".into()],
            codecs: vec![],
            fill_value: None,
            attributes: attrs,
            manifest: m,
            materialized: None,
            coordinate_values: None,
            grid_extent: None,
        };
        let mut root = Group::new("");
        root.arrays = vec![time, tas];
        Dataset {
            source_url: url.into(),
            source_size: 5000,
            format: SourceFormat::NetCdf4,
            root,
            refused: vec![],
        }
    }

    fn refs(d: &Dataset) -> String {
        let mut out = Vec::new();
        crate::write_kerchunk(d, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn err(r: Result<Dataset, CombineError>) -> String {
        match r {
            Err(CombineError::Refused(m)) => m,
            other => panic!("expected a refusal, got {:?}", other.map(|d| d.source_url)),
        }
    }

    #[test]
    fn appending_at_the_end_gives_what_combining_all_gives() {
        let units = "days since 2000-01-01";
        let files: Vec<Dataset> = (0..6)
            .map(|k| {
                let t = [2.0 * k as f64, 2.0 * k as f64 + 1.0];
                file(&format!("file:///f{k}.nc"), &t, units, 1)
            })
            .collect();
        let mut grown = Combination::new(vec![files[0].clone()]).unwrap();
        for f in &files[1..] {
            assert!(grown.add(f.clone()).unwrap(), "{}", f.source_url);
        }
        let whole = combine(files.clone()).unwrap();
        assert_eq!(refs(grown.dataset()), refs(&whole));
        // Stored and read back, it goes on growing the same way.
        let stored = postcard::to_stdvec(&grown).unwrap();
        let mut back: Combination = postcard::from_bytes(&stored).unwrap();
        let later = file("file:///g.nc", &[12.0, 13.0], "hours since 2000-01-13", 1);
        // Other units change how every time value is written: not an append.
        assert!(!back.add(later).unwrap());
        let next = file("file:///g.nc", &[12.0, 13.0], units, 1);
        assert!(back.add(next.clone()).unwrap());
        let mut all = files.clone();
        all.push(next);
        assert_eq!(refs(back.dataset()), refs(&combine(all).unwrap()));
        // A file landing between two others takes its place.
        let mut gappy = Combination::new(vec![files[0].clone(), files[1].clone()]).unwrap();
        for k in [4, 2, 5, 3] {
            assert!(gappy.add(files[k].clone()).unwrap(), "file {k}");
        }
        assert_eq!(refs(gappy.dataset()), refs(&whole));
        // One overlapping another, or the last, is left to a full combine (which says why).
        let middle = file("file:///m.nc", &[4.5], units, 1);
        assert!(!back.add(middle).unwrap());
        let overlap = file("file:///o.nc", &[13.5, 20.0], units, 1);
        assert!(back.add(overlap).unwrap());
        let behind = file("file:///p.nc", &[19.0, 30.0], units, 1);
        assert!(!back.add(behind).unwrap());
    }

    #[test]
    fn files_added_together_go_where_their_times_put_them() {
        let units = "days since 2000-01-01";
        let files: Vec<Dataset> = (0..12)
            .map(|k| {
                let t = [2.0 * k as f64, 2.0 * k as f64 + 1.0];
                file(&format!("file:///f{k:02}.nc"), &t, units, 1)
            })
            .collect();
        let whole = refs(&combine(files.clone()).unwrap());
        // Between combined files, next to each other, and after the last, in one call,
        // given in no particular order.
        let mut c =
            Combination::new(vec![files[0].clone(), files[3].clone(), files[7].clone()]).unwrap();
        let batch: Vec<Dataset> = [9, 1, 11, 2, 5, 10, 4, 8, 6]
            .iter()
            .map(|&k| files[k].clone())
            .collect();
        assert!(c.add_all(batch).unwrap());
        assert_eq!(refs(c.dataset()), whole);
        // Only at the end: appended.
        let mut tail = Combination::new(files[..5].to_vec()).unwrap();
        assert!(
            tail.add_all(files[5..].iter().rev().cloned().collect())
                .unwrap()
        );
        assert_eq!(refs(tail.dataset()), whole);
        // One file of the batch that cannot be placed (overlapping another new one, a new
        // first file, one already combined) leaves the combination as it was.
        let before = refs(c.dataset());
        let late = |name: &str, t: &[f64]| file(name, t, units, 1);
        for batch in [
            vec![
                late("file:///x.nc", &[30.0, 31.0]),
                late("file:///y.nc", &[30.5, 32.0]),
            ],
            vec![
                late("file:///x.nc", &[30.0, 31.0]),
                late("file:///a.nc", &[-5.0, -4.0]),
            ],
            vec![late("file:///x.nc", &[30.0, 31.0]), files[4].clone()],
        ] {
            assert!(!c.add_all(batch).unwrap());
            assert_eq!(refs(c.dataset()), before);
        }
    }

    #[test]
    fn a_partial_last_chunk_stops_appending() {
        let units = "days since 2000-01-01";
        let a = file("file:///a.nc", &[0.0, 1.0, 2.0], units, 2);
        let b = file("file:///b.nc", &[3.0, 4.0], units, 2);
        let mut c = Combination::new(vec![a.clone()]).unwrap();
        assert!(!c.add(b.clone()).unwrap());
        assert!(combine(vec![a, b]).is_err());
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        let a = file("file:///a.nc", &[0.0, 1.0], "days since 2000-01-01", 1);
        let b = file("file:///b.nc", &[2.0, 3.0], "days since 2000-01-01", 1);
        let c = file("file:///c.nc", &[4.0, 5.0], "days since 2000-01-01", 1);
        let one = combine(vec![a.clone(), b.clone(), c.clone()]).unwrap();
        let two = combine(vec![c, a, b]).unwrap();
        assert_eq!(refs(&one), refs(&two));
        let tas = one.root.arrays.iter().find(|x| x.name == "tas").unwrap();
        assert_eq!(tas.shape, vec![6, 3]);
        let keys: Vec<(Vec<u64>, String)> = tas
            .manifest
            .iter()
            .map(|(k, r)| match r {
                ChunkRef::Range { path, .. } => {
                    (k.to_vec(), tas.manifest.paths()[*path as usize].clone())
                }
                _ => panic!(),
            })
            .collect();
        assert_eq!(keys[2], (vec![2, 0], "file:///b.nc".to_string()));
        assert_eq!(keys[5], (vec![5, 0], "file:///c.nc".to_string()));
    }

    #[test]
    fn different_units_are_decoded_and_written_in_the_earliest_files_units() {
        let a = file("file:///a.nc", &[0.0, 1.0], "days since 2000-01-01", 1);
        let b = file(
            "file:///b.nc",
            &[0.0, 24.0],
            "hours since 2000-01-03 00:00:00",
            1,
        );
        let c = combine(vec![b, a]).unwrap();
        let time = c.root.arrays.iter().find(|x| x.name == "time").unwrap();
        assert_eq!(
            time.coordinate_values.as_deref(),
            Some(&[0.0, 1.0, 2.0, 3.0][..])
        );
        assert_eq!(
            time.attributes.get("units").and_then(AttrValue::as_str),
            Some("days since 2000-01-01")
        );
        assert!(matches!(
            time.manifest.iter().next(),
            Some((_, ChunkRef::Inline(_)))
        ));
    }

    #[test]
    fn a_bounds_attribute_naming_no_variable_does_not_refuse_different_units() {
        let with_bounds = |mut f: Dataset| {
            let time = f.root.arrays.iter_mut().find(|x| x.name == "time").unwrap();
            time.attributes
                .insert("bounds".into(), AttrValue::String("time_bnds".into()));
            f
        };
        let a = with_bounds(file(
            "file:///a.nc",
            &[0.0, 1.0],
            "days since 2000-01-01",
            1,
        ));
        let b = with_bounds(file(
            "file:///b.nc",
            &[0.0, 24.0],
            "hours since 2000-01-03 00:00:00",
            1,
        ));
        let c = combine(vec![b.clone(), a.clone()]).unwrap();
        let time = c.root.arrays.iter().find(|x| x.name == "time").unwrap();
        assert_eq!(
            time.coordinate_values.as_deref(),
            Some(&[0.0, 1.0, 2.0, 3.0][..])
        );
        // Bounds that do exist are still refused across units.
        let with_variable = |mut f: Dataset| {
            let mut bnds = f.root.arrays[1].clone();
            bnds.name = "time_bnds".into();
            f.root.arrays.push(bnds);
            f
        };
        let e = err(combine(vec![with_variable(a), with_variable(b)]));
        assert!(e.contains("time bounds 'time_bnds'"), "{e}");
    }

    #[test]
    fn time_bounds_are_rewritten_in_the_combined_units() {
        let with_bounds = |mut f: Dataset, bounds: &[f64]| {
            let time = f.root.arrays.iter_mut().find(|x| x.name == "time").unwrap();
            time.attributes
                .insert("bounds".into(), AttrValue::String("time_bnds".into()));
            let mut b = f.root.arrays[1].clone();
            b.name = "time_bnds".into();
            b.shape = vec![b.shape[0], 2];
            b.chunk_shape = vec![1, 2];
            b.dimensions = vec!["time".into(), "nv".into()];
            b.coordinate_values = Some(bounds.to_vec());
            f.root.arrays.push(b);
            f
        };
        let a = with_bounds(
            file("file:///a.nc", &[0.5, 1.5], "days since 2000-01-01", 1),
            &[0.0, 1.0, 1.0, 2.0],
        );
        let b = with_bounds(
            file(
                "file:///b.nc",
                &[12.0, 36.0],
                "hours since 2000-01-03 00:00:00",
                1,
            ),
            &[0.0, 24.0, 24.0, 48.0],
        );
        let c = combine(vec![b, a]).unwrap();
        let bnds = c
            .root
            .arrays
            .iter()
            .find(|x| x.name == "time_bnds")
            .unwrap();
        assert_eq!(
            bnds.coordinate_values.as_deref(),
            Some(&[0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0][..])
        );
        assert_eq!(
            (bnds.shape.clone(), bnds.chunk_shape.clone()),
            (vec![4, 2], vec![4, 2])
        );
        let Some((_, ChunkRef::Inline(bytes))) = bnds.manifest.iter().next() else {
            panic!("the bounds are written inline");
        };
        let stored: Vec<f64> = bytes
            .chunks(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(stored, [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0]);
    }

    #[test]
    fn refusals_name_the_files_and_the_reason() {
        let a = file(
            "file:///a.nc",
            &[0.0, 1.0, 2.0, 3.0],
            "days since 2000-01-01",
            2,
        );
        let b = file("file:///b.nc", &[4.0, 5.0], "days since 2000-01-01", 1);
        let m = err(combine(vec![a.clone(), b]));
        assert!(
            m.contains("chunk shapes differ") && m.contains("a.nc") && m.contains("b.nc"),
            "{m}"
        );

        let odd = file(
            "file:///odd.nc",
            &[0.0, 1.0, 2.0],
            "days since 2000-01-01",
            2,
        );
        let next = file("file:///next.nc", &[3.0, 4.0], "days since 2000-01-01", 2);
        let m = err(combine(vec![odd, next]));
        assert!(
            m.contains("odd.nc has 3 records but chunks of 2") && m.contains("next.nc"),
            "{m}"
        );

        let late = file("file:///late.nc", &[2.0, 9.0], "days since 2000-01-01", 2);
        let m = err(combine(vec![a.clone(), late]));
        assert!(
            m.contains("overlapping times") && m.contains("late.nc"),
            "{m}"
        );

        let mut packed = file("file:///p.nc", &[8.0, 9.0], "days since 2000-01-01", 2);
        packed.root.arrays[1].attributes.insert(
            "scale_factor".into(),
            AttrValue::Float {
                values: vec![0.25],
                bits: 32,
            },
        );
        let m = err(combine(vec![a.clone(), packed]));
        assert!(m.contains("scale_factor") && m.contains("p.nc"), "{m}");

        let mut other_cal = file("file:///cal.nc", &[8.0, 9.0], "days since 2000-01-01", 2);
        other_cal.root.arrays[0]
            .attributes
            .insert("calendar".into(), AttrValue::String("360_day".into()));
        assert!(err(combine(vec![a, other_cal])).contains("calendars differ"));
    }

    #[test]
    fn nan_fill_values_are_the_same_fill_value() {
        let mut a = file("file:///a.nc", &[0.0, 1.0], "days since 2000-01-01", 1);
        let mut b = file("file:///b.nc", &[2.0, 3.0], "days since 2000-01-01", 1);
        a.root.arrays[1].fill_value = Some(zarrstac_model::FillValue::Float(f64::NAN));
        b.root.arrays[1].fill_value = Some(zarrstac_model::FillValue::Float(f64::NAN));
        assert!(combine(vec![a, b.clone()]).is_ok());
        let mut c = file("file:///c.nc", &[4.0, 5.0], "days since 2000-01-01", 1);
        c.root.arrays[1].fill_value = Some(zarrstac_model::FillValue::Float(1e20));
        let m = err(combine(vec![b, c]));
        assert!(m.contains("_FillValue NaN"), "{m}");
    }

    #[test]
    fn a_repeated_boundary_instant_is_kept() {
        let a = file("file:///a.nc", &[0.0, 1.0], "days since 2000-01-01", 1);
        let b = file("file:///b.nc", &[1.0, 2.0], "days since 2000-01-01", 1);
        let c = combine(vec![a, b]).unwrap();
        let time = c.root.arrays.iter().find(|x| x.name == "time").unwrap();
        assert_eq!(
            time.coordinate_values.as_deref(),
            Some(&[0.0, 1.0, 1.0, 2.0][..])
        );
    }

    #[test]
    fn seconds_between_epochs_follow_the_calendar() {
        let r = parse_time_units("days since 2000-01-01", CfCalendar::Day360).unwrap();
        let t = parse_time_units("days since 2001-01-01", CfCalendar::Day360).unwrap();
        assert_eq!(
            seconds_since(&t.epoch, CfCalendar::Day360, &r.epoch).unwrap(),
            360.0 * 86400.0
        );
        let r = parse_time_units("days since 2000-01-01", CfCalendar::Standard).unwrap();
        let t = parse_time_units("hours since 2000-03-01 06:00", CfCalendar::Standard).unwrap();
        assert_eq!(
            seconds_since(&t.epoch, CfCalendar::Standard, &r.epoch).unwrap(),
            (60.0 * 86400.0) + 6.0 * 3600.0
        );
    }
}

/// The dataset a file belongs to according to where it lies: `template` describes the
/// tail of the path, one `/`-separated part per segment, each either literal text or a
/// `{facet}` placeholder; `{filename}` stands for the file name and `{version}` is left
/// out of the id. The id is the facet values joined by `.` in template order, e.g. the
/// CMIP5 layout `{activity}/{product}/{institute}/{model}/{experiment}/{frequency}/{realm}/{table}/{ensemble}/{version}/{variable}/{filename}`
/// or a CORDEX one. `None` when the path does not fit.
pub fn dataset_id_from_path(url: &str, template: &str) -> Option<String> {
    let path = url.split("://").nth(1).unwrap_or(url);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let parts: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() || parts.len() > segments.len() {
        return None;
    }
    let tail = &segments[segments.len() - parts.len()..];
    let mut facets = Vec::new();
    for (part, seg) in parts.iter().zip(tail) {
        match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some("filename" | "version") => {}
            Some(_) => facets.push(*seg),
            None if part == seg => {}
            None => return None,
        }
    }
    (!facets.is_empty()).then(|| facets.join("."))
}

#[cfg(test)]
mod path_tests {
    use super::dataset_id_from_path;

    #[test]
    fn a_path_template_names_the_dataset() {
        let t = "{activity}/{product}/{institute}/{model}/{experiment}/{frequency}/{realm}/{table}/{ensemble}/{version}/{variable}/{filename}";
        let url = "s3://archive/cmip5/output1/MOHC/HadGEM2-ES/rcp85/mon/atmos/Amon/r1i1p1/v20111124/tas/tas_Amon_x.nc";
        assert_eq!(
            dataset_id_from_path(url, &format!("cmip5/{t}").replacen("{activity}/", "", 1))
                .as_deref(),
            Some("output1.MOHC.HadGEM2-ES.rcp85.mon.atmos.Amon.r1i1p1.tas")
        );
        assert_eq!(dataset_id_from_path("file:///a/b.nc", t), None);
        assert_eq!(
            dataset_id_from_path("file:///x/y/b.nc", "z/{v}/{filename}"),
            None
        );
        assert_eq!(
            dataset_id_from_path("file:///x/y/b.nc", "x/{v}/{filename}").as_deref(),
            Some("y")
        );
    }
}
