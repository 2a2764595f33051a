/// A codec of an array, named after the numcodecs codec that decodes it.
///
/// The list on an [`crate::Array`] is in encoding order: the first codec was applied
/// first by the writer and is undone last by a reader.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    /// DEFLATE with a zlib header (HDF5 filter 1).
    Zlib { level: u32 },
    /// Byte shuffle (HDF5 filter 2).
    Shuffle { element_size: u32 },
    /// Fletcher-32 checksum appended to each chunk (HDF5 filter 3); verified on read.
    Fletcher32,
    /// Blosc (HDF5 filter 32001); its frame header carries what decoding needs.
    Blosc {
        cname: String,
        clevel: u32,
        shuffle: u32,
        blocksize: u32,
    },
    /// Zstandard (HDF5 filter 32015).
    Zstd { level: i32 },
    /// Bitshuffle + LZ4 (HDF5 filter 32008), as the bitshuffle codec of numcodecs.
    Bitshuffle { element_size: u32, block_size: u32 },
    /// LZ4 in the framing of the HDF5 LZ4 filter (32004): decoded by imagecodecs' `lz4h5`.
    Lz4Hdf5,
    /// Variable-length UTF-8 strings.
    VlenUtf8,
    /// A Zarr v3 codec with no variant of its own (sharding, transpose, gzip, crc32c,
    /// extensions), kept by name and configuration: it describes a store's array, and a
    /// writer that would have to decode it refuses the array instead.
    ZarrV3 {
        name: String,
        configuration: serde_json::Value,
    },
}
