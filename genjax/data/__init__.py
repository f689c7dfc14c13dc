"""One entry point for image datasets: `load(name, split)` -> `Dataset` of uint8 images.

Sources, in the order `source='auto'` tries them:
  * `digits` is embedded (scikit-learn's bundled 8x8 digits, laid out as 28x28).
  * IDX datasets (`mnist`, `fashion_mnist`, `kmnist`) are read from canonical IDX files in
    `<data_dir>/<name>/` when a data directory is given by argument or by the
    `GENJAX_DATA_DIR` environment variable;
  * otherwise through tensorflow-datasets, which downloads and prepares when online.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from genjax.data.digits import load_digits
from genjax.data.idx import IdxFormatError, encode_idx, read_idx
from genjax.data.tfds_source import hide_accelerators_from_tensorflow, load_tfds

ENV_DATA_DIR = "GENJAX_DATA_DIR"
IDX_DATASETS = ("mnist", "fashion_mnist", "kmnist")
DATASETS = ("digits",) + IDX_DATASETS
SPLITS = ("train", "test")
SOURCES = ("auto", "idx", "tfds")
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)  # Every dataset here is 28x28 grayscale.
_IDX_PREFIX = {"train": "train", "test": "t10k"}

__all__ = [
    "DATASETS", "Dataset", "DatasetNotFoundError", "ENV_DATA_DIR", "IMAGE_SHAPE",
    "IdxFormatError", "balanced_indices", "balanced_subset",
    "encode_idx", "hide_accelerators_from_tensorflow", "idx_paths", "load",
    "resolve_data_dir", "to_float",
]


class DatasetNotFoundError(FileNotFoundError):
  """The dataset's files are not where genjax looked for them."""


class Dataset(NamedTuple):
  images: np.ndarray  # uint8 [N, H, W, C], 0..255
  labels: np.ndarray  # int32 [N]
  name: str
  split: str

  @property
  def num_classes(self) -> int:
    return NUM_CLASSES


def resolve_data_dir(data_dir: str | None = None) -> str | None:
  """The data directory: the argument if given, else `$GENJAX_DATA_DIR`, else None."""
  return data_dir or os.environ.get(ENV_DATA_DIR) or None


def idx_paths(data_dir: str, name: str, split: str) -> tuple[str, str]:
  """Paths of the (images, labels) IDX files, preferring `.gz` when both exist."""
  folder = os.path.join(data_dir, name)
  out = []
  for kind, dims in (("images", 3), ("labels", 1)):
    stem = os.path.join(folder, f"{_IDX_PREFIX[split]}-{kind}-idx{dims}-ubyte")
    out.append(stem + ".gz" if os.path.exists(stem + ".gz") or not os.path.exists(stem)
               else stem)
  return out[0], out[1]


def _load_idx(name: str, split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
  images_path, labels_path = idx_paths(data_dir, name, split)
  missing = [p for p in (images_path, labels_path) if not os.path.exists(p)]
  if missing:
    raise DatasetNotFoundError(
        f"{name} {split}: no IDX file at {', '.join(missing)} (data dir {data_dir!r}, from "
        f"the data_dir setting or ${ENV_DATA_DIR}). Put the canonical files "
        f"(e.g. {os.path.basename(images_path)}) in {os.path.join(data_dir, name)}/, or "
        "unset the data dir to let tensorflow-datasets download them when online.")
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or labels.ndim != 1:
    raise IdxFormatError(f"{images_path} / {labels_path}: images must be 3-d and labels "
                         f"1-d, got shapes {images.shape} and {labels.shape}.")
  if len(images) != len(labels):
    raise IdxFormatError(f"{images_path} holds {len(images)} images but {labels_path} "
                         f"holds {len(labels)} labels; both must be the {split} split's.")
  if not len(images) or images.shape[1:] != IMAGE_SHAPE[:2]:
    raise IdxFormatError(f"{images_path}: expected N >= 1 images of 28x28, got shape "
                         f"{images.shape}.")
  if labels.max() >= NUM_CLASSES:  # uint8, so never negative.
    raise IdxFormatError(f"{labels_path}: labels must lie in 0..{NUM_CLASSES - 1}, got "
                         f"{labels.min()}..{labels.max()}.")
  return images[..., None], labels.astype(np.int32)


def _validate(images: np.ndarray, labels: np.ndarray, what: str) -> None:
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f"{what}: images must be uint8 [N,H,W,C], got {images.dtype} "
                     f"{images.shape}.")
  if labels.shape != (images.shape[0],):
    raise ValueError(f"{what}: {images.shape[0]} images but labels of shape {labels.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
    raise ValueError(f"{what}: labels must lie in 0..{NUM_CLASSES - 1}, got "
                     f"{labels.min()}..{labels.max()}.")


def load(name: str, split: str = "train", *, data_dir: str | None = None,
         source: str = "auto", download: bool = True) -> Dataset:
  """Loads a whole split as NumPy arrays.

  Args:
    name: one of `DATASETS`.
    split: 'train' or 'test'.
    data_dir: folder holding `<name>/<idx files>`; defaults to `$GENJAX_DATA_DIR`.
    source: 'auto', 'idx' (local files only) or 'tfds' (tensorflow-datasets only).
    download: whether TFDS may download and prepare the dataset.
  """
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}.")
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r} for {name}; use one of {SPLITS}.")
  if source not in SOURCES:
    raise ValueError(f"Unknown data source {source!r}; use one of {SOURCES}.")
  what = f"{name} {split}"
  if name == "digits":
    images, labels = load_digits(split)
  else:
    folder = resolve_data_dir(data_dir)
    if source == "idx" or (source == "auto" and folder):
      if not folder:
        raise DatasetNotFoundError(
            f"{what}: source='idx' needs a data dir (config data_dir or ${ENV_DATA_DIR}).")
      if not os.path.isdir(folder):
        raise DatasetNotFoundError(
            f"{what}: data dir {folder!r} does not exist (from the data_dir setting or "
            f"${ENV_DATA_DIR}). Point it at a folder holding {name}/ with the IDX files.")
      images, labels = _load_idx(name, split, folder)
    else:
      try:
        images, labels = load_tfds(name, split, data_dir=None, download=download)
      except Exception as e:  # TFDS raises many types when offline or unprepared.
        raise DatasetNotFoundError(
            f"{what}: tensorflow-datasets could not provide it ({type(e).__name__}: {e}). "
            f"Offline, set ${ENV_DATA_DIR} (or the config's data_dir) to a folder holding "
            f"{name}/ with the canonical IDX files.") from e
  _validate(images, labels, what)
  return Dataset(images, labels, name, split)


def balanced_indices(labels: np.ndarray, num: int) -> np.ndarray:
  """Indices of the first `num / C` examples of each of the C classes present in `labels`,
  in split order: a deterministic, class-balanced subset (no seed, so every run and every
  model of an experiment sees the same labelled images). Split order is the source's: TFDS
  stores a split shuffled by key hash, the IDX files in published order, so `source='idx'`
  and `source='tfds'` pick different (equally balanced) subsets of MNIST.

  Raises one ValueError when `num` is not a positive multiple of C or some class has fewer
  than `num / C` examples (which includes `num` larger than the split)."""
  labels = np.asarray(labels)
  classes, counts = np.unique(labels, return_counts=True)
  if not labels.size:
    raise ValueError(f"A class-balanced subset of num_train={num} needs labels; the split "
                     "is empty.")
  if num < 1 or num % len(classes):
    raise ValueError(f"A class-balanced subset needs a positive multiple of the "
                     f"{len(classes)} classes present, got num_train={num}.")
  per_class = num // len(classes)
  if per_class > counts.min():
    raise ValueError(f"num_train={num} needs {per_class} examples of every class, but the "
                     f"split of {labels.size} examples has only {counts.min()} of class "
                     f"{classes[counts.argmin()]}.")
  picked = [np.flatnonzero(labels == c)[:per_class] for c in classes]
  return np.sort(np.concatenate(picked))


def balanced_subset(dataset: Dataset, num: int) -> Dataset:
  """`dataset` cut to the class-balanced subset of `balanced_indices(labels, num)`."""
  keep = balanced_indices(dataset.labels, num)
  return dataset._replace(images=dataset.images[keep], labels=dataset.labels[keep])


def to_float(images_uint8):
  """uint8 0..255 -> float32 in [-1, 1], as the tutorial's Normalize(0.5, 0.5). Works on
  NumPy and JAX arrays alike."""
  return images_uint8.astype("float32") / 127.5 - 1.0
