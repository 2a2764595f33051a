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
    registry.register(
        32008,
        Box::new(move |desc, input, elem| {
            bitshuffle_decode(&desc.client_data, input, elem, limit)
                .map_err(|e| H5Error::InvalidData(format!("bitshuffle: {e}")))
        }),
    );
    registry
}

/// Decodes a chunk of the HDF5 bitshuffle filter (32008): optional LZ4 compression of
/// blocks whose bits were transposed. Layout with compression: a 12-byte header (total
/// decoded bytes as big-endian u64, block size in bytes as big-endian u32), then per
/// block a big-endian u32 compressed length and the LZ4 block; the last `size % 8`
/// elements follow uncompressed and untransposed.
fn bitshuffle_decode(cd: &[u32], input: &[u8], elem: usize, limit: u64) -> Result<Vec<u8>, String> {
    let elem_size = cd
        .get(2)
        .map(|&e| e as usize)
        .filter(|&e| e > 0)
        .unwrap_or(elem.max(1));
    let compression = cd.get(4).copied().unwrap_or(0);
    let (total, block_elems, mut pos) = if compression != 0 {
        if input.len() < 12 {
            return Err("chunk shorter than its header".into());
        }
        let total = u64::from_be_bytes(input[..8].try_into().unwrap_or_default());
        let block_bytes = u32::from_be_bytes(input[8..12].try_into().unwrap_or_default()) as usize;
        (total, block_bytes / elem_size, 12)
    } else {
        let block = cd
            .get(3)
            .map(|&b| b as usize)
            .filter(|&b| b > 0)
            .unwrap_or_else(|| default_block(elem_size));
        (input.len() as u64, block, 0)
    };
    if total > limit {
        return Err(format!(
            "chunk decodes to {total} bytes, over the limit of {limit}"
        ));
    }
    if !(total as usize).is_multiple_of(elem_size)
        || block_elems == 0
        || !block_elems.is_multiple_of(8)
    {
        return Err(format!(
            "inconsistent sizes: {total} bytes, {elem_size}-byte elements, blocks of {block_elems}"
        ));
    }
    let size = total as usize / elem_size;
    let mut out = Vec::with_capacity(total as usize);
    let mut done = 0usize;
    while done + 8 <= size {
        let n = block_elems.min((size - done) - (size - done) % 8);
        let nbytes = n * elem_size;
        let transposed: Vec<u8> = if compression != 0 {
            let len = input
                .get(pos..pos + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or("truncated block length")?;
            let data = input.get(pos + 4..pos + 4 + len).ok_or("truncated block")?;
            pos += 4 + len;
            match compression {
                2 => lz4_flex::block::decompress(data, nbytes).map_err(|e| e.to_string())?,
                c => {
                    return Err(format!(
                        "compression {c} inside bitshuffle is not supported"
                    ));
                }
            }
        } else {
            let data = input.get(pos..pos + nbytes).ok_or("truncated block")?;
            pos += nbytes;
            data.to_vec()
        };
        if transposed.len() != nbytes {
            return Err("block decodes to the wrong size".into());
        }
        out.extend_from_slice(&untranspose_bits(&transposed, n, elem_size));
        done += n;
    }
    let rest = (size - done) * elem_size;
    out.extend_from_slice(
        input
            .get(pos..pos + rest)
            .ok_or("truncated trailing elements")?,
    );
    Ok(out)
}

fn default_block(elem_size: usize) -> usize {
    let b = (8192 / elem_size) / 8 * 8;
    b.max(128)
}

/// Inverse of bitshuffle's transpose for `n` (a multiple of 8) elements: bit `b` of byte
/// `j` of element `i` was stored in row `j * 8 + b` (rows of `n / 8` bytes) at bit `i % 8`
/// of byte `i / 8`.
fn untranspose_bits(input: &[u8], n: usize, elem_size: usize) -> Vec<u8> {
    let row = n / 8;
    let mut out = vec![0u8; n * elem_size];
    for j in 0..elem_size {
        for b in 0..8 {
            let r = &input[(j * 8 + b) * row..(j * 8 + b + 1) * row];
            for (k, &byte) in r.iter().enumerate() {
                if byte == 0 {
                    continue;
                }
                for bit in 0..8 {
                    if byte >> bit & 1 == 1 {
                        out[(k * 8 + bit) * elem_size + j] |= 1 << b;
                    }
                }
            }
        }
    }
    out
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
