"""The Gaussian-mixture latent prior: its density, sampling, EM fit and choice of K, files,
and its use in a VAE's importance-weighted bound and in the two scripts."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax.models import latent_prior as prior_lib
from tests.conftest import run_python


def _mixture(seed=0, k=3, dim=4, spread=3.0):
  rng = np.random.default_rng(seed)
  covs = []
  for _ in range(k):
    a = rng.normal(size=(dim, dim))
    covs.append(a @ a.T / dim + 0.1 * np.eye(dim))
  means = rng.normal(scale=spread, size=(k, dim))
  weights = rng.dirichlet(np.ones(k))
  # scikit-learn's convention: upper triangular P with P P^T = precision.
  chols = np.stack([np.linalg.cholesky(np.linalg.inv(c)[::-1, ::-1])[::-1, ::-1] for c in covs])
  prior = prior_lib.GaussianMixture(*(jnp.asarray(a, jnp.float32)
                                      for a in (np.log(weights), means, chols)))
  return prior, weights, means, np.stack(covs)


def test_log_prob_is_the_mixture_density():
  prior, weights, means, covs = _mixture()
  np.testing.assert_allclose(np.triu(prior.precision_cholesky), prior.precision_cholesky)
  z = np.random.default_rng(1).normal(scale=3.0, size=(7, 5, 4))
  expected = np.log(sum(w * stats.multivariate_normal(m, c).pdf(z)
                        for w, m, c in zip(weights, means, covs, strict=True)))
  np.testing.assert_allclose(prior_lib.log_prob(prior, jnp.asarray(z, jnp.float32)), expected,
                             rtol=1e-4, atol=1e-4)


def test_no_prior_is_the_standard_normal_with_the_old_draws():
  key = jax.random.PRNGKey(3)
  z = prior_lib.sample(None, key, 6, 5)
  np.testing.assert_array_equal(z, jax.random.normal(key, (6, 5)))  # earlier grids unchanged
  np.testing.assert_allclose(prior_lib.log_prob(None, z), stats.norm.logpdf(z).sum(-1),
                             rtol=1e-5)


def test_samples_follow_the_mixture():
  prior, weights, means, covs = _mixture(seed=2, k=2, dim=3, spread=10.0)  # apart
  z = np.asarray(prior_lib.sample(prior, jax.random.PRNGKey(0), 40000, 3))
  nearest = np.argmin(((z[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
  for k in range(2):
    members = z[nearest == k]
    assert len(members) / len(z) == pytest.approx(weights[k], abs=0.02)
    np.testing.assert_allclose(members.mean(0), means[k], atol=0.1)
    np.testing.assert_allclose(np.cov(members.T), covs[k], atol=0.15)


def test_fit_finds_two_clusters_and_the_held_out_score_chooses_two():
  rng = np.random.default_rng(0)
  z = np.concatenate([rng.normal(-4.0, 1.0, (600, 2)), rng.normal(4.0, 0.5, (1400, 2))])
  z = z[rng.permutation(len(z))]
  prior, choice = prior_lib.select_and_fit(z, [1, 2], heldout=500)
  scores = choice["heldout_log_prob"]
  assert choice["components"] == 2 and scores["2"] > scores["1"] > scores["standard_normal"]
  order = np.argsort(np.asarray(prior.means)[:, 0])
  np.testing.assert_allclose(np.asarray(prior.means)[order], [[-4, -4], [4, 4]], atol=0.15)
  np.testing.assert_allclose(np.exp(prior.log_weights)[order], [0.3, 0.7], atol=0.03)
  with pytest.raises(ValueError, match="heldout"):
    prior_lib.select_and_fit(z, [1, 2], heldout=len(z))


def test_files_round_trip_and_bad_ones_are_named(tmp_path):
  prior, *_ = _mixture()
  path = str(tmp_path / "prior.npz")
  prior_lib.save(path, prior, step=7, fingerprint="abc")
  loaded, meta = prior_lib.load(path)
  assert meta == {"step": 7, "fingerprint": "abc"}
  for a, b in zip(loaded, prior, strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="latents"):
    prior_lib.check(loaded, 5)  # a model with another latent size
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="bad.npz is not a latent prior"):
    prior_lib.load(str(tmp_path / "bad.npz"))
  np.savez(tmp_path / "short.npz", means=np.zeros((2, 4)))
  with pytest.raises(ValueError, match="short.npz is not a latent prior"):
    prior_lib.load(str(tmp_path / "short.npz"))
  prior_lib.save(str(tmp_path / "ragged"), prior._replace(means=prior.means[:2]))
  with pytest.raises(ValueError, match="ragged is not a latent prior.*expected"):
    prior_lib.load(str(tmp_path / "ragged"))  # saved at exactly that path, refused on load
  flipped = prior.precision_cholesky.at[0, 0, 0].multiply(-1.0)  # log_prob would be NaN
  for name, bad, message in [
      ("lower", prior._replace(precision_cholesky=jnp.swapaxes(prior.precision_cholesky, 1, 2)),
       "not upper triangular"),
      ("negative", prior._replace(precision_cholesky=flipped), "diagonal entry <= 0"),
      ("unnormalised", prior._replace(log_weights=prior.log_weights + 1.0), "weights summing"),
      ("nan", prior._replace(means=prior.means.at[0, 0].set(jnp.nan)), "non-finite")]:
    prior_lib.save(str(tmp_path / name), bad)
    with pytest.raises(ValueError, match=f"{name} is not a latent prior.*{message}"):
      prior_lib.load(str(tmp_path / name))


def test_iw_bound_with_a_one_component_standard_mixture_equals_the_default():
  from genjax import config as config_lib  # pylint: disable=import-outside-toplevel
  from genjax import data  # pylint: disable=import-outside-toplevel
  from genjax.train.task import get_task  # pylint: disable=import-outside-toplevel
  from genjax.train.vae import make_log_likelihood  # pylint: disable=import-outside-toplevel

  c = config_lib.base_config()
  c.family, c.model, c.model_args, c.latent_dim = "vae", "vae_mlp", {"hidden": (16,)}, 3
  c.iw_chunk = 4
  images = jnp.asarray(data.to_float(data.load("digits", "train").images[:8]))
  state = jax.jit(get_task(c).init)(jax.random.PRNGKey(0), {"image": images})
  standard = prior_lib.GaussianMixture(jnp.zeros(1), jnp.zeros((1, 3)), jnp.eye(3)[None])
  shifted = standard._replace(means=jnp.ones((1, 3)))
  key = jax.random.PRNGKey(1)
  default, same, other = (make_log_likelihood(c, 8, p)(state, images, key)
                          for p in (None, standard, shifted))
  np.testing.assert_allclose(same, default, rtol=1e-5)
  assert np.all(np.abs(np.asarray(other) - np.asarray(default)) > 1e-3)  # the prior is used


def _tiny_vae_config(**overrides):
  from genjax import config as config_lib  # pylint: disable=import-outside-toplevel

  c = config_lib.base_config()
  c.family, c.model, c.model_args, c.latent_dim = "vae", "vae_mlp", {"hidden": (16,)}, 3
  c.batch_size = 8
  return config_lib.override(c, overrides)


def test_the_elbo_against_a_standard_mixture_is_the_elbo_with_a_sampled_kl():
  from genjax import data  # pylint: disable=import-outside-toplevel
  from genjax.models.vae import get_vae  # pylint: disable=import-outside-toplevel
  from genjax.train import vae as vae_lib  # pylint: disable=import-outside-toplevel
  from genjax.train.task import get_task  # pylint: disable=import-outside-toplevel

  c = _tiny_vae_config()
  x = jnp.asarray(data.to_float(data.load("digits", "train").images[:8]) > 0, jnp.float32)
  params = jax.jit(get_task(c).init)(jax.random.PRNGKey(0), {"image": x}).params
  vae, log_px = get_vae(c), vae_lib.make_log_px_given_z(c.likelihood)
  standard = prior_lib.GaussianMixture(jnp.zeros(1), jnp.zeros((1, 3)), jnp.eye(3)[None])
  keys = jax.random.split(jax.random.PRNGKey(1), 2000)
  run = jax.jit(jax.vmap(lambda k, p: vae_lib.elbo(vae, log_px, params, x, k, p)[1:],
                         in_axes=(0, None)))
  (recon, kl), (recon_r, kl_r) = run(keys, None), run(keys, standard)
  np.testing.assert_array_equal(recon_r, recon)  # the same z
  assert not np.allclose(kl_r, kl)  # one sample's log q - log r, not the analytic KL ...
  np.testing.assert_allclose(kl_r.mean(0), kl[0], atol=0.05)  # ... whose mean it is


def test_a_frozen_decoder_stays_while_the_encoder_trains_against_a_prior_file(tmp_path):
  from genjax import data  # pylint: disable=import-outside-toplevel
  from genjax.config import validate  # pylint: disable=import-outside-toplevel
  from genjax.models.vae import get_vae  # pylint: disable=import-outside-toplevel
  from genjax.train import vae as vae_lib  # pylint: disable=import-outside-toplevel
  from genjax.train.task import get_task  # pylint: disable=import-outside-toplevel

  prior, *_ = _mixture(k=2, dim=3, spread=1.0)
  path = str(tmp_path / "prior.npz")
  prior_lib.save(path, prior, step=0)
  images = jnp.asarray(data.to_float(data.load("digits", "train").images[:8]))
  for frozen, gradient in (("decoder", "dreg"), ("encoder", "iwae")):
    c = _tiny_vae_config(latent_prior=path, frozen=frozen, iw_train_samples=3,
                         iw_gradient=gradient)
    validate(c)
    task = get_task(c)
    start = jax.jit(task.init)(jax.random.PRNGKey(0), {"image": images})
    step = jax.jit(task.make_step())
    state, losses = start, []
    for _ in range(30):
      state, metrics = step(state, {"image": images})
      losses.append(float(metrics["loss"]))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # the other half trains
    for half in ("encoder", "decoder"):
      same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                                          start.params["params"][half],
                                          state.params["params"][half]))
      assert all(same) if half == frozen else not any(same), (frozen, half)
  # No gradient reaches the frozen half.
  x = images[:4] > 0
  grads = jax.grad(lambda p: vae_lib.elbo(get_vae(c), vae_lib.make_log_px_given_z(
      c.likelihood), vae_lib.frozen_gradient(p, "decoder"), x, jax.random.PRNGKey(2))[0].sum())(
          start.params)
  assert not any(jnp.any(g) for g in jax.tree.leaves(grads["params"]["decoder"]))
  assert all(jnp.any(g) for g in jax.tree.leaves(grads["params"]["encoder"]))
  # The prior is used: against N(0, I) the same steps give other losses.
  c = _tiny_vae_config(frozen="decoder", iw_train_samples=3)
  _, plain = jax.jit(get_task(c).make_step())(start, {"image": images})
  assert abs(float(plain["loss"]) - losses[0]) > 1e-3


def test_a_frozen_half_of_the_moving_average_is_the_frozen_parameters():
  """Resumed with the decoder frozen, Adam's leftover momentum must not reach the averaged
  decoder that is sampled and scored (it did when the average saw the updates unmasked)."""
  from genjax import config as config_lib  # pylint: disable=import-outside-toplevel
  from genjax import data  # pylint: disable=import-outside-toplevel
  from genjax.train import ema as ema_lib  # pylint: disable=import-outside-toplevel
  from genjax.train.task import get_task  # pylint: disable=import-outside-toplevel

  batch = {"image": jnp.asarray(data.to_float(data.load("digits", "train").images[:8]))}
  c = _tiny_vae_config(ema_decay=0.5)
  state = jax.jit(get_task(c).init)(jax.random.PRNGKey(0), batch)
  for config in (c, config_lib.override(c, {"frozen": "decoder"})):
    step = jax.jit(get_task(config).make_step())
    for _ in range(3):
      state, _ = step(state, batch)
  average = ema_lib.sampling_params(state.params, state.opt)["params"]
  equal = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a),
                                                                jax.tree.leaves(b), strict=True))
  assert equal(average["decoder"], state.params["params"]["decoder"])
  assert not equal(average["encoder"], state.params["params"]["encoder"])


@pytest.mark.parametrize("overrides,message", [
    (dict(frozen="generator"), "config.frozen='generator'; use one of"),
    (dict(family="pixelcnn", model="pixelcnn", latent_prior="p.npz"),
     "config.latent_prior applies to a VAE"),
])
def test_bad_prior_training_settings_are_named(overrides, message):
  from genjax.config import validate  # pylint: disable=import-outside-toplevel

  with pytest.raises(ValueError, match=message):
    validate(_tiny_vae_config(**overrides))


def test_fit_script_then_nll_with_the_prior(tmp_path):
  from experiments.configs import vae_mlp  # pylint: disable=import-outside-toplevel
  from genjax.train.loop import train  # pylint: disable=import-outside-toplevel

  workdir = str(tmp_path / "vae")
  train(vae_mlp.get_config("smoke"), workdir, quiet=True)
  fitted = json.loads(run_python(["experiments/fit_prior.py", f"--workdir={workdir}",
                                  "--components=1,3", "--heldout=300"]).stdout)
  assert fitted["components"] in (1, 3) and fitted["num_samples"] > 1000
  assert set(fitted["heldout_log_prob"]) == {"1", "3", "standard_normal"}
  for name in ("latent_prior_samples.png", "latent_prior_samples_standard_normal.png"):
    assert (tmp_path / "vae" / name).stat().st_size > 0
  flow = json.loads(run_python(["experiments/fit_prior.py", f"--workdir={workdir}",
                                "--family=flow", "--flow_layers=2", "--flow_hidden=16",
                                "--flow_steps=40", "--flow_encodings=2", "--heldout=300",
                                f"--out={tmp_path / 'flow.npz'}"]).stdout)
  assert flow["family"] == "flow" and set(flow["heldout_log_prob"]) == {"flow",
                                                                         "standard_normal"}
  # A prior fitted to other parameters is refused, naming the refit.
  prior, meta = prior_lib.load(fitted["out"])
  other = str(tmp_path / "other.npz")
  prior_lib.save(other, prior, **{**meta, "fingerprint": "0" * 16})
  # The encoder tuned to the mixture, decoder frozen, in a copy of the run (resumed).
  tuned = str(tmp_path / "tuned")
  shutil.copytree(workdir, tuned)
  config = vae_mlp.get_config("smoke")
  config.epochs, config.latent_prior, config.frozen = config.epochs + 1, fitted["out"], "decoder"
  train(config, tuned, quiet=True)
  code = f"""
import json
from experiments import nll
kw = dict(iw_samples=10, num_test=50, batch_size=25, iw_chunk=5)
runs = {{name: nll.test_nll({workdir!r}, latent_prior=path, **kw)
        for name, path in (('default', ''), ('mixture', {fitted['out']!r}),
                           ('flow', {flow['out']!r}))}}
runs['tuned'] = nll.test_nll({tuned!r}, **kw)  # its own prior, though fitted before the tuning
runs['tuned_named'] = nll.test_nll({tuned!r}, latent_prior={fitted['out']!r}, **kw)
try:
  nll.test_nll({workdir!r}, latent_prior={other!r}, **kw)
except ValueError as e:
  runs['error'] = str(e)
print(json.dumps(runs))
"""
  runs = json.loads(run_python(code).stdout.strip().splitlines()[-1])
  assert runs["default"]["latent_prior"] == "standard normal"
  assert runs["mixture"]["latent_prior"].startswith(f"gaussian mixture, K={fitted['components']}")
  assert runs["flow"]["latent_prior"].startswith("realnvp flow, 2 coupling layers of 16")
  assert len({runs[name]["nll_nats"] for name in ("default", "mixture", "flow")}) == 3
  assert 0 < runs["mixture"]["nll_nats"] < 784 * np.log(2)
  assert "fitted to other parameters" in runs.get("error", "")
  assert runs["tuned"]["latent_prior"].endswith(f"({fitted['out']}, trained against)")
  assert runs["tuned_named"]["nll_nats"] == runs["tuned"]["nll_nats"]
  assert runs["tuned"]["nll_nats"] != runs["mixture"]["nll_nats"]  # another encoder
  # Samples for evaluate.py --latent_prior: z from the mixture, so other images.
  from genjax.sampling import export_samples  # pylint: disable=import-outside-toplevel
  default, mixture = (export_samples(workdir, 8, str(tmp_path / f"s{i}.npz"), latent_prior=p)
                      for i, p in enumerate(("", fitted["out"])))
  assert mixture["images"].shape == (8, 28, 28, 1) and mixture["images"].dtype == np.uint8
  assert np.any(mixture["images"] != default["images"])
