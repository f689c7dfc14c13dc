"""Mode-collapse signals from a classifier's softmax on samples: pure NumPy functions.

`probs` is always [N, K]: one row of class probabilities per sample (rows sum to 1).
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _check_probs(probs) -> np.ndarray:
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 2:
    raise ValueError(f"probs must be [N, K] with N >= 1 samples and K >= 2 classes, got "
                     f"shape {probs.shape}.")
  if not np.all(np.isfinite(probs)):
    raise ValueError("probs contains NaN or inf.")
  sums = probs.sum(axis=1)
  if np.any(probs < 0) or not np.allclose(sums, 1.0, atol=1e-3):
    raise ValueError(f"probs must be non-negative rows summing to 1 (a softmax), got values in "
                     f"[{probs.min():.3g}, {probs.max():.3g}], row sums in "
                     f"[{sums.min():.4g}, {sums.max():.4g}].")
  return probs


def predicted_class_histogram(probs) -> np.ndarray:
  """[N, K] -> [K]: the fraction of samples whose argmax class is k (sums to 1)."""
  probs = _check_probs(probs)
  counts = np.bincount(np.argmax(probs, axis=1), minlength=probs.shape[1])
  return counts / probs.shape[0]


def class_coverage(probs, min_fraction: float = 0.01) -> float:
  """Fraction of the K classes that receive at least `min_fraction` of the samples' argmax
  predictions (an absolute share, not relative to 1/K). 1.0: every class is generated;
  0.1 with K=10: a single mode. With the default 0.01, a class counts as covered when at
  least 1 % of the samples look like it."""
  if not 0.0 <= min_fraction <= 1.0:
    raise ValueError(f"min_fraction must lie in [0, 1], got {min_fraction}.")
  hist = predicted_class_histogram(probs)
  return float(np.mean(hist >= min_fraction))


def kl_to_uniform(histogram) -> float:
  """KL(histogram || uniform) in nats = log K - H(histogram); 0 for balanced classes,
  log K when every sample falls in one class (0 log 0 = 0)."""
  h = np.asarray(histogram, np.float64)
  if h.ndim != 1 or h.size < 2 or np.any(h < 0) or not np.isclose(h.sum(), 1.0):
    raise ValueError(f"histogram must be 1-d non-negative fractions summing to 1, got "
                     f"shape {h.shape} summing to {h.sum() if h.size else 0}.")
  nz = h[h > 0]
  return float(np.sum(nz * np.log(nz * h.size)))


def classifier_score(probs) -> float:
  """The Inception-score analogue exp(E_x KL(p(y|x) || p(y))), in [1, K]: high when each
  sample is confidently one class and the classes are balanced. Computed over all samples at
  once; the Inception score's usual mean over 10 splits is not taken."""
  probs = _check_probs(probs)
  marginal = probs.mean(axis=0, keepdims=True)
  kl = np.sum(probs * (np.log(probs + _EPS) - np.log(marginal + _EPS)), axis=1)
  return float(np.exp(kl.mean()))
