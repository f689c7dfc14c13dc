"""Known-answer tests of the feature-space metrics on synthetic data (no classifier)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.spatial

from genjax import data as data_lib
from genjax.eval import coverage, evaluate, metrics


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



def test_bad_inputs_name_the_problem():
  rng = np.random.default_rng(6)
  x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
  with pytest.raises(ValueError, match="generated features contains NaN"):
    metrics.fid(x, y * np.nan)
  with pytest.raises(ValueError, match="subset_size >= 2"):   # Was a NaN mean (m (m-1) = 0).
    metrics.kid(x, y, subset_size=1)
  with pytest.raises(ValueError, match="num_subsets >= 1"):   # Was a NaN mean of no subsets.
    metrics.kid(x, y, num_subsets=0)
  with pytest.raises(ValueError, match="k >= 1"):             # Was density NaN, radii 0.
    metrics.precision_recall(x, y, k=0)
  with pytest.raises(ValueError, match="NaN"):                # Was NaN radii.
    metrics.knn_radii_sq(np.full((10, 2), np.nan))
  probs = np.full((300, 10), 0.1)
  bad = probs.copy()
  bad[3, 2] = np.nan
  for f in (coverage.classifier_score, coverage.predicted_class_histogram):
    with pytest.raises(ValueError, match="probs contains NaN"):  # Was NaN / a histogram.
      f(bad)
  with pytest.raises(ValueError, match="summing to 1"):       # Logits, not probabilities.
    coverage.classifier_score(probs - 0.2)
  with pytest.raises(ValueError, match=r"real features must be \[N, D\]"):  # Was IndexError.
    evaluate.evaluate_features(np.zeros(300), y)
  with pytest.raises(ValueError, match="one row per sample"):  # Was scored silently.
    evaluate.evaluate_features(x, y, probs[:5], kid_subsets=2)


def test_kid_matches_float64_reference_on_the_same_subsets():
  # Bińkowski et al.'s unbiased MMD^2 (`polynomial_mmd`, mmd_est='unbiased': diagonals out of
  # K_XX and K_YY, all of K_XY), on the subsets `_kid_subsets` draws from the same keys.
  rng = np.random.default_rng(7)
  real = np.abs(rng.normal(size=(400, 12))).astype(np.float32) * 3
  fake = np.abs(rng.normal(size=(350, 12))).astype(np.float32) * 3.2
  m, num = 200, 5

  def mmd(x, y):
    kxx, kyy, kxy = ((a @ b.T / x.shape[1] + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    return ((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())

  want = []
  for key in jax.random.split(jax.random.PRNGKey(0), num):
    k_r, k_f = jax.random.split(key)
    want.append(mmd(real[np.asarray(jax.random.permutation(k_r, 400))[:m]].astype(np.float64),
                    fake[np.asarray(jax.random.permutation(k_f, 350))[:m]].astype(np.float64)))
  mean, std = metrics.kid(real, fake, num_subsets=num, subset_size=m)
  assert mean == pytest.approx(np.mean(want), rel=1e-5, abs=1e-6)
  assert std == pytest.approx(np.std(want), rel=1e-4, abs=1e-6)


def test_precision_recall_match_brute_force_with_ties_and_padding():
  # Integer grid points: duplicates and distance ties; 130 and 97 rows, blocks of 32 (padded).
  rng = np.random.default_rng(8)
  real = rng.integers(0, 4, size=(130, 3)).astype(np.float32)
  fake = rng.integers(0, 5, size=(97, 3)).astype(np.float32)
  k = 3
  drr, dff, drf = (scipy.spatial.distance.cdist(a, b, "sqeuclidean")
                   for a, b in ((real, real), (fake, fake), (real, fake)))
  r_real, r_fake = np.sort(drr, 1)[:, k], np.sort(dff, 1)[:, k]  # Self is the 0th.
  inside = drf <= r_real[:, None]
  want = {"precision": inside.any(0).mean(), "recall": (drf <= r_fake[None]).any(1).mean(),
          "density": inside.sum(0).mean() / k, "coverage": (drf.min(1) <= r_real).mean()}
  np.testing.assert_allclose(metrics.knn_radii_sq(real, k, block=32), r_real)
  assert metrics.precision_recall(real, fake, k=k, block=32) == pytest.approx(want)


def test_metric_matmuls_ask_for_full_float32():
  # JAX's default precision on recent GPUs is TF32 (CPU ignores it, so only the program can
  # be checked here): every dot product of the metrics must request HIGHEST.
  a = jnp.zeros((8, 4))
  # pylint: disable-next=protected-access
  sq_dists, kid_subsets = metrics._sq_dists, metrics._kid_subsets
  programs = [jax.jit(sq_dists).lower(a, a).as_text(),
              kid_subsets.lower(a, a, jax.random.PRNGKey(0), subset_size=4,
                                num_subsets=2).as_text()]
  dots = [line for text in programs for line in text.splitlines() if "dot_general" in line]
  assert len(dots) >= 4 and all("HIGHEST" in line for line in dots), dots


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
  floats = np.zeros((4, 28, 28, 1), np.float32)
  np.testing.assert_array_equal(pictures.to_uint8(floats), np.full(floats.shape, 128))
  floats[2, 3, 4, 0], floats[3, 0, 0, 0] = np.nan, np.inf
  with pytest.raises(FloatingPointError, match=r"2 of 4 images hold NaN or Inf.*index 2"):
    pictures.grid(floats)  # Not two plausible black or white pixels in a picture.
  table = pictures.markdown_table([{"model": "gan", "fid": 12.3456}, {"model": "vae"}])
  assert table == "| model | fid |\n|---|---|\n| gan | 12.35 |\n| vae |  |\n"


def test_sample_export_refuses_non_finite_samples():
  """A generator that produced NaN must not reach FID as a batch of black images."""
  from types import SimpleNamespace  # pylint: disable=import-outside-toplevel

  from genjax.sampling import generate  # pylint: disable=import-outside-toplevel

  def sample(state, key, num, labels=None):  # state 1: the last image of a batch is NaN.
    del key, labels
    return jnp.zeros((num, 28, 28, 1)).at[num - 1, 0, 0, 0].set(
        jnp.where(state > 0, jnp.nan, 0.0))

  task = SimpleNamespace(sample=sample, conditional=False)
  images, _ = generate(task, jnp.int32(0), jax.random.PRNGKey(0), 3, batch_size=4)
  assert images.dtype == np.uint8 and images.shape == (3, 28, 28, 1)
  with pytest.raises(FloatingPointError, match=r"samples 0\.\.2: 1 of 3 images hold NaN or Inf.*index 2"):
    generate(task, jnp.int32(1), jax.random.PRNGKey(0), 3, batch_size=4)


def test_report_makes_the_folder_of_its_output(tmp_path, capsys):
  from genjax.metric_writers import report  # pylint: disable=import-outside-toplevel

  out = tmp_path / "new" / "folder" / "eval.json"
  report({"fid": 1.5, "per_image": [1, 2]}, str(out), hidden=("per_image",))
  assert json.loads(out.read_text()) == {"fid": 1.5, "per_image": [1, 2]}
  assert "per_image" not in capsys.readouterr().out
