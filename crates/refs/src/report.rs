use zarrstac_model::{Array, AttrValue, ChunkRef, Dataset};

/// What the references hold for one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableOutcome {
    /// Chunks referenced in the source (some small ones possibly inlined).
    Virtualized { referenced: u64, inlined: u64 },
    /// The data itself is in the references, with the reason it had to be.
    Inlined { reason: String },
    /// Not in the references, with the reason.
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableReport {
    pub path: String,
    pub outcome: VariableOutcome,
    /// What a reader of the references gets differently from a reader of the source,
    /// when something does.
    pub caveat: Option<String>,
}

/// Zarr v2 attributes are JSON, which has one number type: a single-precision
/// `scale_factor`/`add_offset` reaches xarray as a double, and packed data decodes to
/// float64 where the source decodes to float32 (same values, twice the memory).
fn packing_caveat(array: &Array) -> Option<String> {
    let single: Vec<&str> = ["scale_factor", "add_offset"]
        .into_iter()
        .filter(|k| {
            matches!(
                array.attributes.get(*k),
                Some(AttrValue::Float { bits: 32, .. })
            )
        })
        .collect();
    (!single.is_empty()).then(|| {
        format!(
            "single-precision {} reach xarray as doubles (Zarr v2 attributes are JSON): decodes to float64, not float32",
            single.join("/")
        )
    })
}

/// One entry per variable of the source, arrays first, then refusals.
pub fn report(dataset: &Dataset) -> Vec<VariableReport> {
    let mut out = Vec::new();
    for (path, array) in dataset.arrays() {
        let outcome = match &array.materialized {
            Some(reason) => VariableOutcome::Inlined {
                reason: reason.clone(),
            },
            None => {
                let (mut referenced, mut inlined) = (0, 0);
                for (_, c) in array.manifest.iter() {
                    match c {
                        ChunkRef::Range { .. } => referenced += 1,
                        ChunkRef::Inline(_) => inlined += 1,
                    }
                }
                VariableOutcome::Virtualized {
                    referenced,
                    inlined,
                }
            }
        };
        let caveat = packing_caveat(array);
        out.push(VariableReport {
            path,
            outcome,
            caveat,
        });
    }
    for r in &dataset.refused {
        out.push(VariableReport {
            path: r.path.clone(),
            outcome: VariableOutcome::Refused {
                reason: r.reason.clone(),
            },
            caveat: None,
        });
    }
    out
}

impl std::fmt::Display for VariableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            VariableOutcome::Virtualized {
                referenced,
                inlined,
            } => write!(
                f,
                "virtual  {}: {referenced} chunks referenced, {inlined} inlined",
                self.path
            ),
            VariableOutcome::Inlined { reason } => write!(f, "inlined  {}: {reason}", self.path),
            VariableOutcome::Refused { reason } => write!(f, "refused  {}: {reason}", self.path),
        }?;
        match &self.caveat {
            Some(caveat) => write!(f, "; {caveat}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zarrstac_model::{ByteOrder, ChunkManifest, DataType, Group};

    fn packed(attributes: &[(&str, AttrValue)]) -> Dataset {
        let mut root = Group::new("");
        root.arrays.push(Array {
            name: "tas".into(),
            dtype: DataType::Int {
                bytes: 2,
                signed: true,
                order: ByteOrder::Little,
            },
            shape: vec![4],
            chunk_shape: vec![4],
            dimensions: vec!["time".into()],
            codecs: Vec::new(),
            fill_value: None,
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            manifest: ChunkManifest::new(1),
            materialized: None,
            coordinate_values: None,
            grid_extent: None,
        });
        Dataset {
            source_url: "file:///t.nc".into(),
            source_size: 0,
            format: zarrstac_model::SourceFormat::NetCdf4,
            root,
            refused: Vec::new(),
        }
    }

    fn float(bits: u8) -> AttrValue {
        AttrValue::Float {
            values: vec![0.01],
            bits,
        }
    }

    #[test]
    fn single_precision_packing_is_named_in_the_variable_line() {
        let single = report(&packed(&[
            ("scale_factor", float(32)),
            ("add_offset", float(32)),
        ]));
        let line = single[0].to_string();
        assert!(line.starts_with("virtual  tas: "), "{line}");
        assert!(
            line.contains("scale_factor/add_offset") && line.contains("float64"),
            "{line}"
        );
        let only_scale = report(&packed(&[
            ("scale_factor", float(32)),
            ("add_offset", float(64)),
        ]));
        assert!(
            only_scale[0]
                .to_string()
                .contains("single-precision scale_factor reach")
        );
        let double = report(&packed(&[("scale_factor", float(64))]));
        assert_eq!(double[0].caveat, None);
    }
}
