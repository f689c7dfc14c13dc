"""Known-answer tests of the feature-space metrics on synthetic data (no classifier)."""
import os

import numpy as np
import pytest
import scipy.linalg

from genjax import data as data_lib
from genjax.eval import coverage, metrics


def _random_psd(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_matches_closed_form_with_scipy_sqrtm():
  rng = np.random.default_rng(0)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_psd(rng, d), _random_psd(rng, d)  # Non-commuting covariances.
  want = (np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
          - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)
  assert metrics.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_diagonal_gaussians_by_hand():
  # N(0, diag(1, 4)) vs N((3, 0), diag(4, 1)): 9 + (1+4) + (4+1) - 2 (2 + 2) = 11.
  assert metrics.frechet_distance(np.zeros(2), np.diag([1., 4.]), np.array([3., 0.]),
                                  np.diag([4., 1.])) == pytest.approx(11.0)


def test_fid_of_gaussian_samples_approaches_closed_form():
  rng = np.random.default_rng(1)
  d, n = 4, 40000
  mu1, mu2 = np.zeros(d), np.full(d, 0.5)
  s1, s2 = _random_psd(rng, d), _random_psd(rng, d)
  x = rng.multivariate_normal(mu1, s1, n)
  y = rng.multivariate_normal(mu2, s2, n)
  want = metrics.frechet_distance(mu1, s1, mu2, s2)
  assert metrics.fid(x, y) == pytest.approx(want, rel=0.05)


def test_sqrtm_psd_survives_singular_covariance():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 8))  # Rank 3 in 8 dimensions.
  s = np.cov(x, rowvar=False)
  root = metrics.sqrtm_psd(s)
  assert np.all(np.isfinite(root)) and np.allclose(root @ root, s, atol=1e-8)
  assert np.isfinite(metrics.frechet_distance(x.mean(0), s, np.zeros(8), np.eye(8)))


def test_kid_is_unbiased_for_one_distribution_and_positive_for_two():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
  same_mean, same_std = metrics.kid(x, y, num_subsets=20, subset_size=300)
  diff_mean, diff_std = metrics.kid(x, y + 0.5, num_subsets=20, subset_size=300)
  assert abs(same_mean) < 3 * same_std + 1e-4
  assert same_std > 0
  assert diff_mean > 10 * max(same_std, diff_std)


def test_precision_recall_density_coverage_by_hand():
  real = np.array([[0.], [1.], [2.], [3.]])
  fake = np.array([[0.5], [10.]])
  # k=1: every real ball has radius 1; 0.5 sits in the balls of 0 and 1, 10 in none.
  # Both fake balls have radius 9.5, and the one around 0.5 holds every real point.
  got = metrics.precision_recall(real, fake, k=1)
  assert got == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0,
                               "coverage": 0.5})


def test_precision_recall_on_toy_clouds():
  rng = np.random.default_rng(4)
  real = rng.normal(size=(600, 2))
  same = rng.normal(size=(600, 2))
  half = same[same[:, 0] > 0]          # One half of the support: precise, low recall.
  far = rng.normal(size=(600, 2)) + 20.0
  pr_same = metrics.precision_recall(real, same, block=300)
  pr_half = metrics.precision_recall(real, half, block=300)
  pr_far = metrics.precision_recall(real, far, block=300)
  assert pr_same["precision"] > 0.9 and pr_same["recall"] > 0.9
  assert pr_half["precision"] > 0.9 and 0.3 < pr_half["recall"] < 0.7
  assert pr_far == pytest.approx({"precision": 0., "recall": 0., "density": 0.,
                                  "coverage": 0.})


def _random_features(images_u8):
  """A fixed random-feature extractor: 784 -> 64 random ReLU features."""
  w = np.random.default_rng(0).normal(size=(784, 64)) / np.sqrt(784)
  x = images_u8.reshape(len(images_u8), -1).astype(np.float64) / 127.5 - 1.0
  return np.maximum(x @ w, 0.0)


def _blur(images_u8, radius):
  x = images_u8.astype(np.float64)
  if radius == 0:
    return x
  k = 2 * radius + 1
  pad = np.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
  return sum(pad[:, i:i + 28, j:j + 28] for i in range(k) for j in range(k)) / k ** 2


def test_fid_rises_monotonically_with_noise_and_blur():
  train = data_lib.load("digits", "train").images
  test = data_lib.load("digits", "test").images
  real = _random_features(train)
  rng = np.random.default_rng(5)
  noisy = [np.clip(test + rng.normal(scale=s, size=test.shape), 0, 255).astype(np.uint8)
           for s in (0, 40, 80, 160)]
  blurred = [np.round(_blur(test, r)).astype(np.uint8) for r in (0, 1, 2, 3)]
  for series in (noisy, blurred):
    fids = [metrics.fid(real, _random_features(x)) for x in series]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_coverage_metrics_by_hand():
  uniform = np.eye(10)[np.arange(100) % 10]      # 10 per class, one-hot.
  collapsed = np.eye(10)[np.zeros(100, int)]     # Every sample is class 0.
  np.testing.assert_allclose(coverage.predicted_class_histogram(uniform), np.full(10, 0.1))
  assert coverage.class_coverage(uniform) == 1.0
  assert coverage.class_coverage(collapsed) == pytest.approx(0.1)
  assert coverage.kl_to_uniform(coverage.predicted_class_histogram(uniform)) == \
      pytest.approx(0.0, abs=1e-12)
  assert coverage.kl_to_uniform(coverage.predicted_class_histogram(collapsed)) == \
      pytest.approx(np.log(10))
  assert coverage.classifier_score(uniform) == pytest.approx(10.0, rel=1e-6)
  assert coverage.classifier_score(collapsed) == pytest.approx(1.0, rel=1e-6)
  assert coverage.classifier_score(np.full((5, 10), 0.1)) == pytest.approx(1.0)
  # Two classes at 0.5 % each fall under the 1 % default threshold.
  probs = np.eye(10)[np.r_[np.zeros(198, int), 1, 2]]
  assert coverage.class_coverage(probs) == pytest.approx(0.1)
  assert coverage.class_coverage(probs, min_fraction=0.005) == pytest.approx(0.3)


def test_metrics_reject_bad_input():
  with pytest.raises(ValueError, match="at least as many samples as feature dimensions"):
    metrics.gaussian_stats(np.zeros((10, 64)))
  with pytest.raises(ValueError, match="float features"):
    metrics.fid(np.zeros((100, 4), np.int32), np.zeros((100, 4)))
  with pytest.raises(ValueError, match="dimensions differ"):
    metrics.kid(np.zeros((50, 4)), np.zeros((50, 5)))
  with pytest.raises(ValueError, match="Mismatched"):
    metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
  with pytest.raises(ValueError, match=r"\[N, K\]"):
    coverage.classifier_score(np.ones(10))
  with pytest.raises(ValueError, match="summing to 1"):
    coverage.kl_to_uniform(np.array([0.5, 0.6]))


def test_pictures_strips_class_grids_and_tables(tmp_path):
  from genjax.eval import pictures  # pylint: disable=import-outside-toplevel
  frames = np.zeros((2 * 5, 28, 28, 1), np.uint8)
  assert pictures.interpolation_strip(frames, 5).shape == (2 * 30 + 2, 5 * 30 + 2, 1)
  with pytest.raises(ValueError, match="steps"):
    pictures.interpolation_strip(frames, 3)
  path = pictures.linear_path(np.zeros(3), np.ones(3), 5)
  np.testing.assert_allclose(path[:, 0], [0, .25, .5, .75, 1])
  images = np.stack([np.full((28, 28, 1), 10 * k, np.uint8) for k in range(10)] * 2)
  g = pictures.per_class_grid(images, np.r_[np.arange(10), np.arange(10)], per_class=3)
  assert g.shape == (10 * 30 + 2, 3 * 30 + 2, 1)
  assert g[2 + 30 * 7 + 5, 2 + 30 + 5, 0] == 70 and g[2 + 30 * 7 + 5, 2 + 60 + 5, 0] == 0
  assert os.path.exists(pictures.save_image(g, str(tmp_path / "g.png")))
  table = pictures.markdown_table([{"model": "gan", "fid": 12.3456}, {"model": "vae"}])
  assert table == "| model | fid |\n|---|---|\n| gan | 12.35 |\n| vae |  |\n"
