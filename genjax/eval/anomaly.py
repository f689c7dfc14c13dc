"""Likelihood-based anomaly detection: score = -log p(x), quality = AUROC.

A model trained on the normal data should give anomalies a lower likelihood; AUROC is the
probability that a random anomaly scores above a random normal example (0.5: chance).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(scores_normal: np.ndarray, scores_anomalous: np.ndarray) -> float:
  """AUROC of separating anomalies (positives) from normal examples by score (higher =
  more anomalous)."""
  scores_normal, scores_anomalous = np.ravel(scores_normal), np.ravel(scores_anomalous)
  if not scores_normal.size or not scores_anomalous.size:
    raise ValueError(f"AUROC needs both classes: got {scores_normal.size} normal and "
                     f"{scores_anomalous.size} anomalous scores.")
  labels = np.r_[np.zeros(scores_normal.size), np.ones(scores_anomalous.size)]
  return float(roc_auc_score(labels, np.r_[scores_normal, scores_anomalous]))
