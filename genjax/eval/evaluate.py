"""Samples -> every number: FID, KID, precision / recall / density / coverage, class coverage,
KL to uniform and classifier score, all in one feature classifier's space.

`evaluate_features` is pure over precomputed features; `evaluate_images` runs a classifier
on uint8 images first; `load_samples` validates the `.npz` interface of
`experiments/sample.py`.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from genjax import data as data_lib
from genjax.eval import classifier as classifier_lib
from genjax.eval import coverage, metrics

SAMPLES_KEY = "images"


class SampleFileError(ValueError):
  """A samples file that is not `images`: uint8 [N, 28, 28, 1]."""


def check_images(images: Any, what: str = "samples") -> np.ndarray:
  """Raises SampleFileError unless `images` is uint8 [N, 28, 28, 1] with N >= 1."""
  images = np.asarray(images)
  want = "uint8 [N, 28, 28, 1] (0..255, as experiments/sample.py writes)"
  if images.dtype != np.uint8:
    hint = (" Float images in [-1, 1] convert with genjax.eval.pictures.to_uint8."
            if np.issubdtype(images.dtype, np.floating) else "")
    raise SampleFileError(f"{what}: images must be {want}, got dtype {images.dtype}.{hint}")
  if images.ndim != 4 or tuple(images.shape[1:]) != data_lib.IMAGE_SHAPE or not len(images):
    raise SampleFileError(f"{what}: images must be {want}, got shape {images.shape}.")
  return images


def load_samples(path: str) -> np.ndarray:
  """The validated `images` array of a samples `.npz` file."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"Samples file {path} does not exist (write one with "
                            "experiments/sample.py --workdir W --out FILE.npz).")
  try:
    with np.load(path) as f:
      if SAMPLES_KEY not in f.files:
        raise SampleFileError(f"{path}: no '{SAMPLES_KEY}' array (found {sorted(f.files)}); "
                              "expected images uint8 [N, 28, 28, 1].")
      images = f[SAMPLES_KEY]
  except (OSError, ValueError) as e:
    if isinstance(e, SampleFileError):
      raise
    raise SampleFileError(f"{path} is not a readable .npz file ({e}).") from e
  return check_images(images, path)


def evaluate_features(real_features: np.ndarray, fake_features: np.ndarray,
                      fake_probs: np.ndarray | None = None, *, k: int = 3,
                      kid_subsets: int = 100, kid_subset_size: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
  """All metrics of generated features against real ones (plus class-probability metrics
  when `fake_probs` [M, K] is given)."""
  for name, feats in (("generated", fake_features), ("real", real_features)):
    if np.ndim(feats) != 2:
      raise ValueError(f"{name} features must be [N, D], got shape {np.shape(feats)}.")
  if fake_probs is not None and np.shape(fake_probs)[:1] != np.shape(fake_features)[:1]:
    raise ValueError(f"{np.shape(fake_features)[0]} generated features but class "
                     f"probabilities of shape {np.shape(fake_probs)}: one row per sample.")
  dim = np.shape(real_features)[1]
  for name, feats in (("generated", fake_features), ("real", real_features)):
    if np.shape(feats)[0] < dim:
      raise ValueError(f"{np.shape(feats)[0]} {name} samples but the classifier features "
                       f"have {dim} dimensions: FID needs at least {dim} samples "
                       "(10000 is usual).")
  kid_mean, kid_std = metrics.kid(real_features, fake_features, num_subsets=kid_subsets,
                                  subset_size=kid_subset_size, seed=seed)
  out = {"fid": metrics.fid(real_features, fake_features), "kid": kid_mean,
         "kid_std": kid_std, **metrics.precision_recall(real_features, fake_features, k=k),
         "num_samples": int(np.shape(fake_features)[0]),
         "num_real": int(np.shape(real_features)[0])}
  if fake_probs is not None:
    hist = coverage.predicted_class_histogram(fake_probs)
    out.update(class_coverage=coverage.class_coverage(fake_probs),
               kl_to_uniform=coverage.kl_to_uniform(hist),
               classifier_score=coverage.classifier_score(fake_probs),
               class_histogram=[float(h) for h in hist])
  return out


FeatureFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def evaluate_images(images: np.ndarray, real_images: np.ndarray, features_fn: FeatureFn,
                    **kwargs) -> dict[str, Any]:
  """Metrics of uint8 `images` against uint8 `real_images`; `features_fn(images) ->
  (features [N, D], probs [N, K])` is the feature extractor (normally a classifier's)."""
  images, real_images = check_images(images), check_images(real_images, "real images")
  real_features, _ = features_fn(real_images)
  fake_features, fake_probs = features_fn(images)
  return evaluate_features(real_features, fake_features, fake_probs, **kwargs)


def classifier_features(clf: classifier_lib.Classifier) -> FeatureFn:
  return lambda images: classifier_lib.features_and_probs(clf.params, images)


def evaluate_against_dataset(images: np.ndarray, dataset: str, *, split: str = "test",
                             classifier_dir: str | None = None,
                             data_dir: str | None = None, max_real: int = 0,
                             **kwargs) -> dict[str, Any]:
  """Metrics of `images` against a real split, in the dataset's classifier features.

  Loads the classifier first so a missing one fails before any work is done."""
  images = check_images(images)
  clf = classifier_lib.load(dataset, classifier_dir)
  if images.shape[0] < classifier_lib.FEATURE_DIM:
    raise ValueError(f"{images.shape[0]} samples but the classifier features have "
                     f"{classifier_lib.FEATURE_DIM} dimensions: FID needs at least "
                     f"{classifier_lib.FEATURE_DIM} samples (10000 is usual).")
  real = data_lib.load(dataset, split, data_dir=data_dir).images
  if max_real:
    real = real[:max_real]
  out = evaluate_images(images, real, classifier_features(clf), **kwargs)
  out.update(dataset=dataset, split=split,
             classifier_test_accuracy=clf.meta.get("test_accuracy"))
  return out
