"""Likelihood maths: bits/dim, binarisation, the importance-weighted bound, merged and
paired evaluations."""
import glob
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.eval import likelihood as lik
from tests.conftest import ROOT, run_python


def test_bits_per_dim_matches_hand_computation():
  # 81.3 nats over 784 binary pixels: 81.3 / (784 * ln 2) = 0.149605... bits/dim.
  assert lik.nats_to_bits_per_dim(81.3, 784) == pytest.approx(81.3 / 784 / 0.6931471805599453)
  assert lik.nats_to_bits_per_dim(81.3, 784) == pytest.approx(0.1496053, abs=1e-6)
  assert lik.bits_per_dim_to_nats(1.0, 784) == pytest.approx(784 * math.log(2))
  assert lik.bits_per_dim_to_nats(lik.nats_to_bits_per_dim(86.0, 784), 784) == (
      pytest.approx(86.0))
  with pytest.raises(ValueError, match="num_dims"):
    lik.nats_to_bits_per_dim(1.0, 0)


def test_binarize_draws_bernoulli_of_intensity():
  images = jnp.broadcast_to(jnp.array([-1.0, 0.0, 1.0, 0.5]), (20000, 4))  # p = 0, .5, 1, .75
  x = lik.binarize(jax.random.PRNGKey(0), images)
  assert set(np.unique(np.asarray(x))) <= {0.0, 1.0}
  np.testing.assert_allclose(np.asarray(x.mean(0)), [0.0, 0.5, 1.0, 0.75], atol=0.015)


def test_bernoulli_log_prob_matches_hand_computation():
  logits = jnp.array([[0.0, 2.0]])
  x = jnp.array([[1.0, 0.0]])
  hand = math.log(0.5) + math.log(1 - 1 / (1 + math.exp(-2.0)))
  assert float(lik.bernoulli_log_prob(logits, x)[0]) == pytest.approx(hand, rel=1e-6)


# Toy: p(z) = N(0,1), p(x|z) = N(z,1) so p(x) = N(0,2); the proposal q(z|x) = p(z) ignores
# x, so the bound is loose at k = 1 and tightens slowly with k for |x| large.
X = jnp.array([-3.0, 0.5, 2.5])
NORM = jax.scipy.stats.norm.logpdf


def _toy_log_weights(key, n):
  z = jax.random.normal(key, (n, X.shape[0]))  # [n, B] ~ q = p(z)
  return NORM(X, z, 1.0) + NORM(z) - NORM(z)


def test_iw_bound_k1_is_the_elbo_and_rises_with_k_toward_log_px():
  keys = jax.random.split(jax.random.PRNGKey(0), 1000)

  @jax.jit
  def mean_bounds(keys):  # mean over keys of L_k for k = 1, 10, 1000: [3, B]
    return jnp.stack([
        jax.vmap(lambda key: lik.iw_log_likelihood(_toy_log_weights, key, k, min(k, 100)))(
            keys).mean(0) for k in (1, 10, 1000)])

  # k = 1 is one log-weight (chunk 0 draws with fold_in(key, 0)).
  np.testing.assert_allclose(
      lik.iw_log_likelihood(_toy_log_weights, keys[0], 1, 1),
      _toy_log_weights(jax.random.fold_in(keys[0], 0), 1)[0], rtol=1e-6)
  k1, k10, k1000 = np.asarray(mean_bounds(keys))
  elbo = -0.5 * np.log(2 * np.pi) - 0.5 * (np.asarray(X) ** 2 + 1.0)  # E_q log p(x|z)
  log_px = np.asarray(NORM(X, 0.0, jnp.sqrt(2.0)))
  np.testing.assert_allclose(k1, elbo, atol=0.15)
  assert np.all(k1 < k10) and np.all(k10 < k1000), (k1, k10, k1000)
  assert np.all(k1000 <= log_px + 0.01)
  np.testing.assert_allclose(k1000, log_px, atol=0.1)


def test_iw_bad_chunk_raises():
  with pytest.raises(ValueError, match="multiple of the chunk"):
    lik.iw_log_likelihood(_toy_log_weights, jax.random.PRNGKey(0), 10, 3)


def test_evaluate_dataset_pads_the_last_batch_and_keeps_order():
  images = np.arange(7 * 4, dtype=np.uint8).reshape(7, 2, 2, 1)
  fn = lambda state, x, key: x.reshape(x.shape[0], -1).sum(-1) + state
  out = lik.evaluate_dataset(fn, 1.0, images, jax.random.PRNGKey(0), batch_size=3)
  expected = (images.astype(np.float32) / 127.5 - 1.0).reshape(7, -1).sum(-1) + 1.0
  np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_evaluate_dataset_from_a_later_batch_matches_the_whole_split():
  images = np.arange(7 * 4, dtype=np.uint8).reshape(7, 2, 2, 1)
  fn = lambda state, x, key: x.reshape(x.shape[0], -1).sum(-1) + jax.random.uniform(
      key, (x.shape[0],))  # the batch key matters, as a binarisation's does
  key = jax.random.PRNGKey(0)
  whole = lik.evaluate_dataset(fn, None, images, key, batch_size=3)
  later = lik.evaluate_dataset(fn, None, images[3:], key, batch_size=3, first_batch=1)
  np.testing.assert_allclose(later, whole[3:], rtol=1e-6)
  unaligned = lik.evaluate_dataset(fn, None, images[3:], key, batch_size=3)
  assert not np.allclose(unaligned, whole[3:])


def _part(start, values, **overrides):
  return {"workdir": "w", "step": 5, "iw_samples": 10, "iw_chunk": 5, "seed": 0, "batch_size": 2,
          "num_dims": 784, "start": start, "log_likelihoods": values, **overrides}


def test_merge_parts_pools_disjoint_ranges_and_names_what_does_not_fit():
  merged = lik.merge_parts([_part(2, [-3.0, -5.0]), _part(0, [-1.0, -3.0])])
  assert (merged["start"], merged["num_test"], merged["contiguous"]) == (0, 4, True)
  assert merged["nll_nats"] == pytest.approx(3.0)
  assert merged["sem_nats"] == pytest.approx(np.std([1.0, 3.0, 3.0, 5.0], ddof=1) / 2.0)
  assert merged["bits_per_dim"] == pytest.approx(3.0 / 784 / np.log(2))
  assert np.isnan(lik.merge_parts([_part(0, [-1.0])])["sem_nats"])  # one image: no spread
  assert not lik.merge_parts([_part(0, [-1.0]), _part(4, [-2.0])])["contiguous"]
  with pytest.raises(ValueError, match="overlap"):
    lik.merge_parts([_part(0, [-1.0, -2.0]), _part(1, [-1.0])])
  with pytest.raises(ValueError, match=r"differ in \['step'\]"):
    lik.merge_parts([_part(0, [-1.0]), _part(2, [-1.0], step=6)])
  with pytest.raises(ValueError, match=r"differ in \['iw_chunk'\]"):
    lik.merge_parts([_part(0, [-1.0]), _part(2, [-1.0], iw_chunk=10)])
  with pytest.raises(ValueError, match="log_likelihoods"):
    lik.merge_parts([{k: v for k, v in _part(0, [-1.0]).items() if k != "log_likelihoods"}])


def test_paired_difference_pairs_the_images_both_scored_and_refuses_what_does_not_pair():
  # A scored images 0-3 in two parts, B images 2-5: they pair on images 2 and 3.
  a = [_part(2, [-2.0, -3.0], workdir="a"), _part(0, [-9.0, -9.0], workdir="a")]
  b = [_part(2, [-3.0, -3.5, -7.0, -7.0], workdir="b", iw_samples=5000)]
  paired = lik.paired_difference(a, b)
  assert (paired["num_images"], paired["first_image"], paired["last_image"]) == (2, 2, 3)
  # NLL_A - NLL_B per image: 2 - 3 = -1 and 3 - 3.5 = -0.5; A is lower on both.
  assert paired["mean_nats"] == pytest.approx(-0.75)
  assert paired["sem_nats"] == pytest.approx(np.std([-1.0, -0.5], ddof=1) / np.sqrt(2))
  assert paired["frac_lower"] == pytest.approx(1.0)
  assert (paired["nll_a"], paired["nll_b"]) == (pytest.approx(2.5), pytest.approx(3.25))
  flipped = lik.paired_difference(b, a)
  assert (flipped["mean_nats"], flipped["frac_lower"]) == (pytest.approx(0.75), 0.0)
  with pytest.raises(ValueError, match=r"binarise the test set differently.*'seed', 0, 1"):
    lik.paired_difference(a, [_part(2, [-3.0], seed=1)])
  with pytest.raises(ValueError, match="binarise.*batch_size"):
    lik.paired_difference(a, [_part(2, [-3.0], batch_size=100)])
  with pytest.raises(ValueError, match="no test image is in both"):
    lik.paired_difference(a, [_part(10, [-3.0])])
  with pytest.raises(ValueError, match="side A: parts differ in"):
    lik.paired_difference([_part(0, [-1.0]), _part(1, [-1.0], step=7)], b)


def test_paired_difference_refuses_two_model_families():
  # A VAE binarises image i with split(key)[0], a PixelCNN with the key: different images.
  vae, pixelcnn = _part(0, [-1.0, -2.0], family="vae"), _part(0, [-3.0], family="pixelcnn")
  with pytest.raises(ValueError, match=r"'vae' evaluation and B a 'pixelcnn'.*unpaired"):
    lik.paired_difference([vae], [pixelcnn])
  assert lik.paired_difference([vae], [_part(0, [-3.0], family="vae")])["num_images"] == 1
  # Files written before 'family' was recorded are checked by their 'model'.
  old_vae, old_gated = _part(0, [-1.0], model="vae_conv"), _part(0, [-2.0], model="gated_pixelcnn")
  with pytest.raises(ValueError, match=r"'vae' evaluation and B a 'pixelcnn'"):
    lik.paired_difference([old_vae], [old_gated])
  with pytest.raises(ValueError, match=r"'pixelcnn' evaluation and B a 'vae'"):
    lik.paired_difference([old_gated], [vae])
  assert lik.paired_difference([old_vae], [_part(0, [-2.0], model="vae_mlp")])["num_images"] == 1


def test_merge_parts_carries_the_family_and_merges_old_parts_with_new():
  merged = lik.merge_parts([_part(0, [-1.0], model="vae_conv"), _part(2, [-1.0], family="vae")])
  assert merged["family"] == "vae"
  assert "family" not in lik.merge_parts([_part(0, [-1.0]), _part(2, [-1.0])])
  with pytest.raises(ValueError, match=r"differ in \['family'\]"):
    lik.merge_parts([_part(0, [-1.0], family="vae"), _part(2, [-1.0], model="pixelcnn")])


def test_compare_nll_reproduces_a_paired_figure_of_results_md():
  # RESULTS.md, "A fourth round in turns": four rounds - three, whole test set, IW k = 5000,
  # each evaluation in ten committed parts of 1000: -0.119 +- 0.009 (55 % of images lower).
  results = os.path.join(ROOT, "experiments", "results")
  sides = [",".join(sorted(glob.glob(os.path.join(
      results, f"nll_vae_conv_turns_r{r}_k5000_*[0-9].json")))) for r in (4, 3)]
  assert all(len(side.split(",")) == 10 for side in sides)
  out = run_python(["experiments/compare_nll.py", f"--a={sides[0]}", f"--b={sides[1]}"]).stdout
  paired = json.loads(out)
  assert paired["num_images"] == 10000
  assert (round(paired["mean_nats"], 3), round(paired["sem_nats"], 3)) == (-0.119, 0.009)
  assert round(paired["frac_lower"], 2) == 0.55
  assert (round(paired["nll_a"], 2), round(paired["nll_b"], 2)) == (81.90, 82.01)
  refused = run_python(["experiments/compare_nll.py", f"--a={sides[0]}"], check=False)
  assert refused.returncode != 0 and "Give both --a and --b" in refused.stderr


def test_likelihood_scripts_record_provenance_make_out_folders_refuse_an_unused_ood(tmp_path):
  from experiments.configs import vae_mlp  # pylint: disable=import-outside-toplevel
  from genjax.train.loop import train  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "vae_ex3")
  train(vae_mlp.get_config("smoke,digits,exclude=3"), workdir, quiet=True)
  flags = [f"--workdir={workdir}", "--iw_samples=10", "--num_test=30"]
  refused = run_python(["experiments/anomaly.py", *flags, "--ood=kmnist"], check=False)
  # Class 3 is the anomalous set of this run: --ood was silently unused before.
  assert refused.returncode != 0 and "--ood=kmnist would not be used" in refused.stderr
  out = tmp_path / "new" / "anomaly.json"  # A missing folder failed the write at the end.
  run_python(["experiments/anomaly.py", *flags, "--seed=2", f"--out={out}"])
  result = json.loads(out.read_text())
  assert result["task"] == "digits class 3 held out" and result["seed"] == 2
  assert {"date", "env"} <= set(result) and "versions" in result["env"]
  out = tmp_path / "other" / "nll.json"
  run_python(["experiments/nll.py", *flags, "--batch_size=10", f"--out={out}"])
  result = json.loads(out.read_text())
  assert {"date", "env"} <= set(result) and result["num_test"] == 30
  out = tmp_path / "priors" / "mixture.npz"
  run_python(["experiments/fit_prior.py", f"--workdir={workdir}", "--components=2",
              f"--out={out}"])
  assert out.exists()  # Its folder was missing: the save failed after the fit.
