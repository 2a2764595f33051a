//! Zarr v2 stores (EOPF products) into the Dataset model: metadata only.
