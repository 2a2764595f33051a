#!/usr/bin/env python3
"""Could a Zarr v2 codec carry single-precision CF packing so that xarray decodes kerchunk
references to float32 with the source's values? numcodecs FixedScaleOffset is the only
v2 codec that unpacks integers to floats; this compares its decoding with xarray's
(raw.astype(float32) * scale_factor + add_offset, in float32) over every int16 value, for
the packing of fixtures/generated/times.nc's `tas`.

usage: packing_exactness.py [FILE VARIABLE]    (needs numpy, numcodecs, netCDF4)
"""
import sys

import netCDF4
import numcodecs
import numpy as np

path, name = (sys.argv[1:3] if len(sys.argv) > 2 else ("fixtures/generated/times.nc", "tas"))
with netCDF4.Dataset(path) as ds:
    var = ds[name]
    sf, ao, raw_type = var.scale_factor, var.add_offset, var.dtype
every = np.arange(np.iinfo(raw_type).min, np.iinfo(raw_type).max + 1, dtype=raw_type)
xarray_way = every.astype("f4") * np.float32(sf) + np.float32(ao)
codec = numcodecs.FixedScaleOffset(offset=float(ao), scale=1 / float(sf), dtype="f4", astype=raw_type.str)
codec_way = np.frombuffer(codec.decode(every.tobytes()), dtype="f4")
differ = int((codec_way != xarray_way).sum())
print(f"{path} {name}: scale_factor {sf!r} add_offset {ao!r} ({raw_type}): "
      f"FixedScaleOffset differs from xarray's float32 decoding on {differ} of {every.size} values")
