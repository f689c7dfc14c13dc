"""Reader for the canonical IDX files (MNIST, Fashion-MNIST, KMNIST), optionally gzipped.

Format: a big-endian header -- two zero bytes, a type byte (0x08 = uint8), the number of
dimensions -- then one uint32 per dimension, then the raw values. Whether a file is gzipped
is read from its first bytes, not its name: browsers and some downloaders gunzip a file and
keep its `.gz` name, or the reverse.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

_UINT8 = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
# The format's other data types, which genjax does not read (its datasets are all uint8).
_OTHER_DTYPES = {0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
                 0x0E: "float64"}


class IdxFormatError(ValueError):
  """An IDX file whose header or size does not match the format."""


def parse_idx(raw: bytes, *, name: str = "<bytes>") -> np.ndarray:
  """Parses the bytes of one (decompressed) IDX file into a uint8 array."""
  if len(raw) < 4:
    raise IdxFormatError(f"{name}: {len(raw)} bytes is too short for an IDX header.")
  zero, dtype_code, ndim = int.from_bytes(raw[0:2], "big"), raw[2], raw[3]
  if zero != 0 or dtype_code != _UINT8 or ndim not in (1, 3):
    if zero != 0:
      why = "an IDX file starts with two zero bytes. Is this really an IDX file?"
    elif dtype_code in _OTHER_DTYPES:
      why = (f"data type code 0x{dtype_code:02x} is {_OTHER_DTYPES[dtype_code]}; genjax "
             "reads unsigned-byte (0x08) IDX files only.")
    elif dtype_code != _UINT8:
      why = f"0x{dtype_code:02x} is no IDX data type code. Is this really an IDX file?"
    else:
      why = f"{ndim} dimensions; genjax reads 1-d label and 3-d image files only."
    magic = int.from_bytes(raw[0:4], "big")
    raise IdxFormatError(
        f"{name}: bad magic number 0x{magic:08x}; expected 0x00000801 (labels) "
        f"or 0x00000803 (images): {why}")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise IdxFormatError(f"{name}: truncated header ({len(raw)} bytes).")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected = header + math.prod(shape)  # Exact: np.prod wraps around in int64.
  if len(raw) != expected:
    raise IdxFormatError(
        f"{name}: header declares shape {shape} ({expected} bytes) but the file has "
        f"{len(raw)} bytes; the file is truncated or corrupt.")
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gunzipping it when it starts with gzip's magic bytes."""
  path = os.fspath(path)
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise IdxFormatError(f"{path}: cannot be read as an IDX file ({e}).") from e
  if raw[:2] == _GZIP_MAGIC:
    try:
      raw = gzip.decompress(raw)
    # gzip raises these on a corrupt or truncated stream (zlib.error is not an OSError).
    except (OSError, EOFError, zlib.error) as e:
      raise IdxFormatError(f"{path}: the gzip data is corrupt or truncated ({e}); fetch "
                           "the file again.") from e
  return parse_idx(raw, name=path)


def encode_idx(array: np.ndarray) -> bytes:
  """The inverse of `parse_idx`, used to write small fixtures."""
  array = np.ascontiguousarray(array, dtype=np.uint8)
  header = bytes([0, 0, _UINT8, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.tobytes()
