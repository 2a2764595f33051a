//! STAC for zarrstac: items with CF-mapped datacube metadata built from the Dataset
//! model, and offline validation against the vendored STAC schemas.

pub mod cf;
pub mod cmip6;
pub mod eopf;
pub mod item;
pub mod netcdf;
pub mod time;
pub mod validate;
pub mod zarr_store;

pub use item::{ItemError, ItemOptions, StoreStyle};
pub use netcdf::item_for_file;
pub use validate::{Problem, Validator};
pub use zarr_store::item_for_zarr;
