"""The RealNVP latent prior: its map and inverse, its log-density against the Jacobian, its
fit to an aggregate posterior, and its files."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax.models import flow_prior as flow_lib
from genjax.models import latent_prior as prior_lib


def _random_flow(latent_dim=4, layers=3, hidden=8, seed=0):
  """A flow far from the identity: every parameter (zero-initialised ones too) perturbed."""
  prior = flow_lib.init(jax.random.PRNGKey(seed), latent_dim, layers, hidden)
  leaves, tree = jax.tree.flatten(prior.params)
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
  leaves = [leaf + 0.3 * jax.random.normal(k, leaf.shape)
            for leaf, k in zip(leaves, keys, strict=True)]
  return prior.replace(params=jax.tree.unflatten(tree, leaves))


def test_a_new_flow_is_the_standard_normal():
  prior = flow_lib.init(jax.random.PRNGKey(0), 5, 2, 8)
  z = np.random.default_rng(0).normal(size=(3, 7, 5))
  np.testing.assert_allclose(prior_lib.log_prob(prior, jnp.asarray(z, jnp.float32)),
                             stats.norm.logpdf(z).sum(-1), rtol=1e-5)


def test_log_prob_is_the_change_of_variables_and_sample_inverts_the_map():
  prior = _random_flow()
  masks = flow_lib.coupling_masks(4, 3)
  assert np.all(masks.sum(1) == 2) and np.all(masks[0] + masks[1] == 1)
  z = jnp.asarray(np.random.default_rng(2).normal(size=(6, 4)), jnp.float32)

  def forward(v):  # z [L] -> u [L]
    return prior.module.apply(prior.params, v[None])[0][0]

  for point, log_r in zip(z, prior_lib.log_prob(prior, z), strict=True):
    _, log_abs_det = np.linalg.slogdet(np.asarray(jax.jacfwd(forward)(point), np.float64))
    expected = stats.norm.logpdf(np.asarray(forward(point))).sum() + log_abs_det
    np.testing.assert_allclose(log_r, expected, rtol=1e-4, atol=1e-4)
  key = jax.random.PRNGKey(5)
  draws = prior_lib.sample(prior, key, 9, 4)
  u, _ = prior.module.apply(prior.params, draws)
  np.testing.assert_allclose(u, jax.random.normal(key, (9, 4)), atol=1e-4)
  assert np.abs(np.asarray(draws) - np.asarray(u)).max() > 0.1  # not the identity


def test_fit_learns_a_curved_aggregate_posterior():
  # q(z|x_n) = N((t_n, t_n^2 / 2), diag(0.05, 0.3)^2), t_n ~ N(0, 1): a banana, not Gaussian.
  rng = np.random.default_rng(0)
  t = rng.normal(size=3000)
  means, stds = np.stack([t, 0.5 * t ** 2], 1), np.array([0.05, 0.3]) + np.zeros((3000, 2))
  prior = flow_lib.fit(means, stds, layers=4, hidden=32, steps=1500, batch_size=256,
                       learning_rate=3e-3)
  n = rng.integers(0, 3000, size=3000)
  fresh = means[n] + stds[n] * rng.normal(size=(3000, 2))
  # The aggregate posterior's own density: the mixture of all 3000 Gaussians.
  per_component = stats.norm.logpdf((fresh[:, None] - means[None]) / stds[None]).sum(-1)
  true = (np.log(np.mean(np.exp(per_component), 1)) - np.log(stds[0]).sum()).mean()
  gaussian = stats.multivariate_normal(fresh.mean(0), np.cov(fresh.T)).logpdf(fresh).mean()
  fitted = prior_lib.mean_log_prob(prior, fresh)
  assert true + 0.05 > fitted > true - 0.1 > gaussian + 0.5, (true, fitted, gaussian)
  with pytest.raises(ValueError, match="one shape"):
    flow_lib.fit(means, stds[:10], steps=1)


def test_files_round_trip_and_bad_ones_are_named(tmp_path):
  prior = _random_flow(latent_dim=6, layers=2, hidden=8)
  path = str(tmp_path / "flow.npz")
  prior_lib.save(path, prior, step=3)
  loaded, meta = prior_lib.load(path)
  assert meta == {"step": 3} and (loaded.layers, loaded.hidden) == (2, 8)
  assert prior_lib.describe(loaded) == "realnvp flow, 2 coupling layers of 8"
  z = jnp.asarray(np.random.default_rng(0).normal(size=(5, 6)), jnp.float32)
  np.testing.assert_array_equal(prior_lib.log_prob(loaded, z), prior_lib.log_prob(prior, z))
  with pytest.raises(ValueError, match="6 latents|5 latents"):
    prior_lib.check(loaded, 5)  # a model with another latent size
  with np.load(path) as data:  # one array lost
    arrays = {name: data[name] for name in data.files if not name.endswith("Dense_1/bias")}
  np.savez(tmp_path / "cut.npz", **arrays)
  with pytest.raises(ValueError, match="cut.npz is not a latent prior.*other shapes"):
    prior_lib.load(str(tmp_path / "cut.npz"))
