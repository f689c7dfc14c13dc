"""The TensorFlow-Datasets path: `tfds.data_source`, read whole into NumPy.

`tfds.data_source` reads ArrayRecord files by random access and needs no TensorFlow. When
TensorFlow is installed anyway (TFDS imports it for `tfds.load` and for preparing datasets),
it is hidden from every GPU and TPU first, so that it cannot take accelerator memory that
JAX needs.
"""
from __future__ import annotations

import importlib.util

import numpy as np


def hide_accelerators_from_tensorflow() -> None:
  """Makes TensorFlow, when present, use the CPU only. Safe to call many times."""
  if importlib.util.find_spec("tensorflow") is None:
    return
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):
      pass  # Already initialised or no such device kind: nothing to hide.


def load_tfds(name: str, split: str, *, data_dir: str | None, download: bool
              ) -> tuple[np.ndarray, np.ndarray]:
  """Returns (images uint8 [N,H,W,C], labels int32 [N]) through TFDS."""
  hide_accelerators_from_tensorflow()
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
  n = len(source)
  if n == 0:
    raise ValueError(f"TFDS dataset {name!r} split {split!r} is empty.")
  records = [source[i] for i in range(n)]
  images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
  labels = np.asarray([int(r["label"]) for r in records], np.int32)
  return images, labels
