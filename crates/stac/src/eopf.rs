//! Items for ESA EOPF Zarr products (Sentinel-1, -2, -3).
