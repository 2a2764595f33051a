//! HDF5 filter pipelines as numcodecs codecs.

use hdf5_reader::messages::filter_pipeline::FilterPipelineMessage;
use std::io::Read;

use hdf5_reader::FilterRegistry;
use hdf5_reader::error::Error as H5Error;
use zarrstac_model::Codec;

/// hdf5-reader's built-in decoders plus Zstandard, for variables that must be decoded
/// (materialized). Output is capped at `limit` bytes so a hostile chunk cannot inflate
/// without bound.
pub(crate) fn decoders(limit: u64) -> FilterRegistry {
    let mut registry = FilterRegistry::new();
    registry.register(
        32015,
        Box::new(move |_desc, input, _elem| {
            let mut decoder = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| H5Error::InvalidData(format!("zstd: {e}")))?;
            let mut out = Vec::new();
            (&mut decoder)
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| H5Error::InvalidData(format!("zstd: {e}")))?;
            if out.len() as u64 > limit {
                return Err(H5Error::InvalidData(format!(
                    "zstd chunk inflates past {limit} bytes"
                )));
            }
            Ok(out)
        }),
    );
    registry
}

/// Codecs for a filter pipeline (in the order the filters were applied), or the name
/// of the first filter no numcodecs codec can decode from the stored bytes.
pub(crate) fn codecs_for(
    pipeline: Option<&FilterPipelineMessage>,
    item_size: u64,
) -> Result<Vec<Codec>, String> {
    let Some(pipeline) = pipeline else {
        return Ok(Vec::new());
    };
    let mut codecs = Vec::with_capacity(pipeline.filters.len());
    for f in &pipeline.filters {
        let cd = &f.client_data;
        let codec = match f.id {
            1 => Codec::Zlib {
                level: cd.first().copied().unwrap_or(6),
            },
            2 => Codec::Shuffle {
                element_size: cd.first().copied().unwrap_or(item_size as u32).max(1),
            },
            3 => Codec::Fletcher32,
            32001 => {
                // cd_values: [filter rev, blosc version, typesize, bufsize, clevel, shuffle, compressor]
                let cname = match cd.get(6).copied().unwrap_or(0) {
                    0 => "blosclz",
                    1 => "lz4",
                    2 => "lz4hc",
                    3 => "snappy",
                    4 => "zlib",
                    5 => "zstd",
                    _ => "blosclz",
                };
                Codec::Blosc {
                    cname: cname.to_string(),
                    clevel: cd.get(4).copied().unwrap_or(5),
                    shuffle: cd.get(5).copied().unwrap_or(1),
                    blocksize: 0,
                }
            }
            32015 => Codec::Zstd {
                level: cd.first().map(|&l| l as i32).unwrap_or(3),
            },
            id => return Err(filter_name(id, f.name.as_deref())),
        };
        codecs.push(codec);
    }
    Ok(codecs)
}

fn filter_name(id: u16, name: Option<&str>) -> String {
    let known = match id {
        4 => "szip",
        5 => "nbit",
        6 => "scaleoffset",
        32004 => "lz4 (HDF5 framing)",
        32008 => "bitshuffle",
        307 => "bzip2",
        32013 => "zfp",
        32017 => "sz",
        _ => "",
    };
    match (known, name) {
        ("", Some(n)) if !n.is_empty() => format!("filter {id} ('{n}')"),
        ("", _) => format!("filter {id}"),
        (k, _) => format!("filter {id} ({k})"),
    }
}
