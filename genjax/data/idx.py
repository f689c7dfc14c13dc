"""Reader for the canonical IDX files (MNIST, Fashion-MNIST, KMNIST), optionally gzipped.

Format: a big-endian header -- two zero bytes, a type byte (0x08 = uint8), the number of
dimensions -- then one uint32 per dimension, then the raw values.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

_UINT8 = 0x08


class IdxFormatError(ValueError):
  """An IDX file whose header or size does not match the format."""


def parse_idx(raw: bytes, *, name: str = "<bytes>") -> np.ndarray:
  """Parses the bytes of one (decompressed) IDX file into a uint8 array."""
  if len(raw) < 4:
    raise IdxFormatError(f"{name}: {len(raw)} bytes is too short for an IDX header.")
  zero, dtype_code, ndim = int.from_bytes(raw[0:2], "big"), raw[2], raw[3]
  if zero != 0 or dtype_code != _UINT8 or ndim not in (1, 3):
    magic = int.from_bytes(raw[0:4], "big")
    raise IdxFormatError(
        f"{name}: bad magic number 0x{magic:08x}; expected 0x00000801 (labels) "
        "or 0x00000803 (images). Is this really an IDX file?")
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise IdxFormatError(f"{name}: truncated header ({len(raw)} bytes).")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected = header + int(np.prod(shape))
  if len(raw) != expected:
    raise IdxFormatError(
        f"{name}: header declares shape {shape} ({expected} bytes) but the file has "
        f"{len(raw)} bytes; the file is truncated or corrupt.")
  return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gunzipping it when its name ends in `.gz`."""
  path = os.fspath(path)
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:  # gzip raises these on a corrupt stream.
    raise IdxFormatError(f"{path}: cannot be read as an IDX file ({e}).") from e
  return parse_idx(raw, name=path)


def encode_idx(array: np.ndarray) -> bytes:
  """The inverse of `parse_idx`, used to write small fixtures."""
  array = np.ascontiguousarray(array, dtype=np.uint8)
  header = bytes([0, 0, _UINT8, array.ndim]) + b"".join(
      int(d).to_bytes(4, "big") for d in array.shape)
  return header + array.tobytes()
