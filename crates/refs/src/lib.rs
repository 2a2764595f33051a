//! Virtual Zarr references from the Dataset model.
//!
//! [`kerchunk`] writes kerchunk JSON v1 (Zarr v2 keys, numcodecs codec ids, absolute
//! source URLs) and [`parquet`] the same references as kerchunk parquet; [`inline`] moves small chunks into the references before writing;
//! [`report`] says, per variable, what the references hold.

pub mod combine;
pub mod inline;
pub mod kerchunk;
pub mod parquet;
pub mod report;

pub use combine::{CombineError, combine};
pub use inline::inline_small_chunks;
pub use kerchunk::{KerchunkError, kerchunk_bytes, write_kerchunk};
pub use report::{VariableOutcome, VariableReport, report};
