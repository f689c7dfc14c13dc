"""scikit-learn's bundled 8x8 digits, laid out like MNIST: the embedded default dataset.

Each 8x8 image (values 0..16) is scaled to 0..255, resized to 20x20 and centred in a 28x28
frame, the way MNIST centres its digits in a 20x20 box. There is no published split, so a
fixed seeded 80/20 split stands in: 1438 train and 359 test images.
"""
from __future__ import annotations

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


def load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (images uint8 [N,28,28,1], labels int32 [N]) for 'train' or 'test'."""
  from sklearn import datasets  # Imported lazily: only this dataset needs it.

  bunch = datasets.load_digits()
  images = np.stack([_to_mnist_layout(x) for x in bunch.images])[..., None]
  labels = bunch.target.astype(np.int32)
  order = np.random.RandomState(_SPLIT_SEED).permutation(len(labels))
  n_test = int(round(len(labels) * _TEST_FRACTION))
  index = {"test": order[:n_test], "train": order[n_test:]}[split]
  return images[index], labels[index]
