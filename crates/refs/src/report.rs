use zarrstac_model::{ChunkRef, Dataset};

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
        out.push(VariableReport { path, outcome });
    }
    for r in &dataset.refused {
        out.push(VariableReport {
            path: r.path.clone(),
            outcome: VariableOutcome::Refused {
                reason: r.reason.clone(),
            },
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
        }
    }
}
