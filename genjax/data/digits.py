"""scikit-learn's bundled 8x8 digits, laid out like MNIST: the embedded default dataset.

Each 8x8 image (values 0..16) is scaled to 0..255, resized to 20x20 and centred in a 28x28
frame, the way MNIST centres its digits in a 20x20 box. There is no published split, so a
fixed seeded 80/20 split stands in: 1438 train and 359 test images.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
from PIL import Image

_SPLIT_SEED = 0
_TEST_FRACTION = 0.2


def _to_mnist_layout(image8: np.ndarray) -> np.ndarray:
  img = Image.fromarray(np.round(image8 * (255.0 / 16.0)).astype(np.uint8))
  box = np.asarray(img.resize((20, 20), Image.Resampling.BILINEAR))
  out = np.zeros((28, 28), np.uint8)
  out[4:24, 4:24] = box
  return out


def _bundled_csv() -> str | None:
  """scikit-learn's digits.csv.gz, found without importing scikit-learn (a 3 s import that
  every short run on digits would pay); None where that file is not there."""
  spec = importlib.util.find_spec("sklearn")
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
      return path
  return None


def _digits_8x8() -> tuple[np.ndarray, np.ndarray]:
  """(images float [1797, 8, 8] in 0..16, labels [1797]): `sklearn.datasets.load_digits()`'s
  arrays, read from its bundled file the way it reads them (rows: 64 pixels, then the label)."""
  path = _bundled_csv()
  if path is None:
    from sklearn import datasets  # pylint: disable=import-outside-toplevel

    bunch = datasets.load_digits()
    return bunch.images, bunch.target
  rows = np.loadtxt(path, delimiter=",")
  return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(int)


def load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (images uint8 [N,28,28,1], labels int32 [N]) for 'train' or 'test'."""
  images8, targets = _digits_8x8()
  images = np.stack([_to_mnist_layout(x) for x in images8])[..., None]
  labels = targets.astype(np.int32)
  order = np.random.RandomState(_SPLIT_SEED).permutation(len(labels))
  n_test = int(round(len(labels) * _TEST_FRACTION))
  index = {"test": order[:n_test], "train": order[n_test:]}[split]
  return images[index], labels[index]
