"""VAE and PixelCNN tasks: a few steps on tiny data lower the loss; samples have the image
shape and range; the loop, config and nll script serve both families."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as config_lib
from genjax import data
from genjax.eval import likelihood as lik
from genjax.train.task import get_task
from tests.conftest import run_python

TINY = {
    "vae_mlp": ("vae", {"hidden": (64,)}, "loss"),
    "vae_conv": ("vae", {"channels": (8, 16)}, "loss"),
    "vae_gated": ("vae", {"channels": (4, 8), "hidden": 16}, "loss"),
    "pixelcnn": ("pixelcnn", {"features": 8, "num_blocks": 1, "head_features": 16}, "nll_loss"),
    "gated_pixelcnn": ("pixelcnn", {"features": 8, "num_layers": 2, "head_features": 16},
                       "nll_loss"),
}


def _config(model, **overrides):
  family, args, _ = TINY[model]
  c = config_lib.base_config()
  c.family, c.model, c.model_args, c.latent_dim, c.lr = family, model, args, 8, 3e-3
  for k, v in overrides.items():
    c[k] = v
  return c


@pytest.mark.parametrize("model", sorted(TINY))
def test_few_steps_lower_the_loss_and_samples_are_images(model):
  task = get_task(_config(model))
  images = data.to_float(data.load("digits", "train").images[:16])  # [16, 28, 28, 1]
  batch = {"image": jnp.asarray(images), "label": jnp.zeros((16,), jnp.int32)}
  step = task.make_step(None)

  @jax.jit
  def run(key):
    state = task.init(key, batch)  # Inside `run`'s jit.
    state, metrics = jax.lax.scan(lambda s, _: step(s, batch), state, None, length=30)
    return state, metrics, task.sample(state, jax.random.PRNGKey(1), 3, None)

  state, metrics, samples = run(jax.random.PRNGKey(0))
  loss = np.asarray(metrics[TINY[model][2]])
  assert np.all(np.isfinite(loss))
  assert loss[-5:].mean() < 0.8 * loss[:5].mean(), loss
  assert int(state.step) == 30
  assert samples.shape == (3, 28, 28, 1)
  assert float(samples.min()) >= -1.0 and float(samples.max()) <= 1.0
  if TINY[model][0] == "pixelcnn":  # Ancestral samples are binary: exactly -1 or 1.
    assert set(np.unique(np.asarray(samples))) <= {-1.0, 1.0}


def test_gated_conv_is_a_sigmoid_gated_half_of_one_convolution():
  from genjax.models.conv import Conv, ConvTranspose
  from genjax.models.vae import GatedConv
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 7, 3))
  for up, inner, size in ((False, Conv, 4), (True, ConvTranspose, 14)):
    gated = GatedConv(5, stride=2, up=up)
    params = gated.init(jax.random.PRNGKey(1), x)
    y = gated.apply(params, x)
    hg = inner(10, (5, 5), (2, 2)).apply({"params": params["params"][inner.__name__ + "_0"]}, x)
    assert y.shape == (2, size, size, 5)
    np.testing.assert_allclose(y, hg[..., :5] * jax.nn.sigmoid(hg[..., 5:]), rtol=1e-6)


def test_kl_warmup_weights_the_gradient_not_the_logged_elbo():
  from genjax.train.vae import kl_weight
  assert [float(kl_weight(jnp.int32(s), 4)) for s in (0, 1, 3, 9)] == [0.25, 0.5, 1.0, 1.0]
  assert float(kl_weight(jnp.int32(0), 0)) == 1.0
  batch = {"image": jnp.asarray(data.to_float(data.load("digits", "train").images[:16]))}

  def one_step(warmup):
    task = get_task(_config("vae_mlp", kl_warmup_steps=warmup))
    state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
    return jax.jit(task.make_step(None))(state, batch)

  (plain, m_plain), (one, _), (slow, m_slow) = one_step(0), one_step(1), one_step(10 ** 6)
  same = jax.tree.map(np.array_equal, plain.params, one.params)
  assert all(jax.tree.leaves(same))        # beta = 1 from the first step: the plain ELBO step.
  moved = jax.tree.map(np.array_equal, plain.params, slow.params)
  assert not all(jax.tree.leaves(moved))   # beta ~ 0: another gradient...
  assert float(m_slow["loss"]) == float(m_plain["loss"])  # ...but the same logged -ELBO.


def _metrics_of_steps(config, steps: int = 20) -> list[dict]:
  """Per-step metrics of `steps` jitted steps on 16 digits images."""
  task = get_task(config)
  batch = {"image": jnp.asarray(data.to_float(data.load("digits", "train").images[:16]))}
  step = jax.jit(task.make_step(None))
  state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
  metrics = []
  for _ in range(steps):
    state, m = step(state, batch)
    metrics.append({k: float(v) for k, v in m.items()})
  return metrics


def test_iwae_objective_is_a_tighter_bound_and_trains():
  metrics = _metrics_of_steps(_config("vae_mlp", iw_train_samples=8))
  for m in metrics:
    assert m["loss"] < -m["elbo"]  # L_k > the mean log weight (Jensen).
  assert metrics[-1]["loss"] < 0.9 * metrics[0]["loss"], metrics
  with pytest.raises(ValueError, match="iw_train_samples"):
    config_lib.validate(_config("vae_mlp", iw_train_samples=4, kl_warmup_steps=10))
  with pytest.raises(ValueError, match="iw_train_samples"):
    config_lib.validate(_config("vae_mlp", iw_train_samples=0))


def test_dreg_gradient_equals_the_textbook_surrogate_and_trains():
  """DReG's one-pass gradient against its two-pass surrogate (Tucker et al. 2019, eq. 7):
  -(1/B) sum_b [sum_i sg(w_i) log w_i(sg(z_i), theta) + sum_i sg(w_i^2) log w_i(z_i, sg(theta))],
  q's parameters held fixed inside log q, on the same samples."""
  from genjax.models.vae import VAE, get_vae
  from genjax.train import vae as vae_task

  config = _config("vae_conv", iw_train_samples=4, iw_gradient="dreg")
  model, log_px_given_z = get_vae(config), vae_task.make_log_px_given_z("bernoulli")
  images = jnp.asarray(data.to_float(data.load("digits", "train").images[:6]))
  x = vae_task.make_data_fn("bernoulli")(jax.random.PRNGKey(1), images)
  # Everything below jitted: eager conv ops would be compiled one by one (slow on CPU).
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x[:1])
  key, n = jax.random.PRNGKey(2), 4
  norm, sg = jax.scipy.stats.norm.logpdf, jax.lax.stop_gradient

  def surrogate(p):
    mean, logvar = model.apply(p, x, method=VAE.encode)
    std = jnp.exp(0.5 * logvar)
    z = mean + std * jax.random.normal(key, (n,) + mean.shape)

    def log_w(p_dec, z):
      out = model.apply(p_dec, z.reshape((-1, z.shape[-1])), method=VAE.decode)
      x_rep = jnp.broadcast_to(x, (n,) + x.shape).reshape((-1,) + x.shape[1:])
      return (log_px_given_z(out, x_rep).reshape(n, -1) + norm(z).sum(-1)
              - norm(z, sg(mean), sg(std)).sum(-1))

    w = sg(jax.nn.softmax(log_w(p, z), axis=0))
    return -jnp.mean(jnp.sum(w * log_w(p, sg(z)) + w ** 2 * log_w(sg(p), z), axis=0))

  grads, metrics = jax.jit(
      lambda p: vae_task.dreg_gradient(model, log_px_given_z, p, x, key, n))(params)
  expected = jax.jit(jax.grad(surrogate))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5),
               grads, expected)
  iwae_grads = jax.jit(jax.grad(lambda p: -jnp.mean(vae_task.lik.logmeanexp(
      vae_task.log_weights(model, log_px_given_z, p, x, key, n), axis=0))))(params)
  decoder = lambda g: g["params"]["decoder"]  # pylint: disable=C3001
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5),
               decoder(grads), decoder(iwae_grads))  # DReG changes only the encoder's part...
  encoder = lambda g: jax.tree.leaves(g["params"]["encoder"])  # pylint: disable=C3001
  same = [np.allclose(a, b) for a, b in zip(encoder(grads), encoder(iwae_grads), strict=True)]
  assert not all(same)  # ...which differs from IWAE's.
  steps = _metrics_of_steps(config)
  assert abs(steps[0]["loss"] - float(metrics["loss"])) < 50  # The same bound is logged.
  assert steps[-1]["loss"] < 0.9 * steps[0]["loss"], steps
  with pytest.raises(ValueError, match="iw_train_samples"):
    config_lib.validate(_config("vae_mlp", iw_gradient="dreg"))
  with pytest.raises(ValueError, match="'iwae' or 'dreg'"):
    config_lib.validate(_config("vae_mlp", iw_train_samples=4, iw_gradient="stl"))


def test_gaussian_vae_trains():
  metrics = _metrics_of_steps(_config("vae_mlp", likelihood="gaussian"))
  assert metrics[-1]["loss"] < metrics[0]["loss"]


def test_lr_halflife_halves_the_adam_rate():
  from genjax.train.task import likelihood_optimizer  # pylint: disable=import-outside-toplevel

  params = {"w": jnp.ones(3)}
  grads = {"w": jnp.array([1.0, -2.0, 0.5])}

  def update_at(config, step):  # Adam's first update is lr * sign(g); later steps likewise
    tx = likelihood_optimizer(config)  # for a constant gradient, so only the rate differs.
    state = tx.init(params)
    for _ in range(step + 1):
      updates, state = tx.update(grads, state, params)
    return np.asarray(updates["w"])

  constant = _config("vae_mlp", lr=1e-2)
  decayed = _config("vae_mlp", lr=1e-2, lr_halflife_steps=10)
  np.testing.assert_allclose(update_at(decayed, 0), update_at(constant, 0), rtol=1e-5)
  np.testing.assert_allclose(update_at(decayed, 10), 0.5 * update_at(constant, 10), rtol=1e-4)
  np.testing.assert_allclose(update_at(decayed, 20), 0.25 * update_at(constant, 20), rtol=1e-4)
  with pytest.raises(ValueError, match="lr_halflife_steps"):
    config_lib.validate(_config("vae_mlp", lr_halflife_steps=-1))


def test_bad_likelihood_config_raises():
  c = _config("vae_mlp", likelihood="poisson")
  with pytest.raises(ValueError, match="likelihood"):
    config_lib.validate(c)
  with pytest.raises(ValueError, match="exclude_label"):
    config_lib.validate(_config("vae_mlp", exclude_label=10))


def test_model_families_follow_the_model_registries():
  from genjax.models import pixelcnn  # pylint: disable=import-outside-toplevel

  assert lik.MODEL_FAMILIES == {model: family for model, (family, _, _) in TINY.items()}
  assert {m for m, f in lik.MODEL_FAMILIES.items() if f == "pixelcnn"} == set(pixelcnn.MODELS)


def test_nll_refuses_a_continuous_decoder():
  with pytest.raises(ValueError, match="'gaussian' is a density.*not a likelihood of the 8-bit"):
    lik.check_discrete_likelihood(_config("vae_mlp", likelihood="gaussian"))
  lik.check_discrete_likelihood(_config("vae_mlp"))
  lik.check_discrete_likelihood(_config("pixelcnn"))


def test_trained_log_likelihood_fn_scores_under_the_prior_the_run_trained_against(
    tmp_path, monkeypatch):
  from genjax.models import latent_prior as prior_lib  # pylint: disable=import-outside-toplevel
  from genjax.train import vae  # pylint: disable=import-outside-toplevel

  path = str(tmp_path / "prior.npz")
  prior_lib.save(path, prior_lib.GaussianMixture(jnp.zeros(1), jnp.full((1, 8), 2.0),
                                                 jnp.eye(8)[None]))
  seen = []
  monkeypatch.setattr(vae, "make_log_likelihood", lambda config, k, prior: seen.append(prior))
  _, name = lik.trained_log_likelihood_fn(_config("vae_mlp", latent_prior=path), None,
                                          iw_samples=2)
  np.testing.assert_allclose(seen[-1].means, 2.0)
  assert "trained against" in name and path in name
  _, name = lik.trained_log_likelihood_fn(_config("vae_mlp"), None, iw_samples=2)
  assert seen[-1] is None and name == "standard normal"


def test_exclude_label_drops_the_class():
  from genjax.train.loop import load_train_split  # pylint: disable=import-outside-toplevel

  split = load_train_split(_config("vae_mlp", dataset="digits", exclude_label=3))
  assert len(split.labels) > 0 and not np.any(split.labels == 3)


def test_smoke_config_trains_through_the_loop_and_nll_script(tmp_path):
  from experiments.configs import vae_mlp  # pylint: disable=import-outside-toplevel
  from genjax.train.loop import train  # pylint: disable=import-outside-toplevel

  workdir = str(tmp_path / "vae")
  state = train(vae_mlp.get_config("smoke"), workdir, quiet=True)
  assert os.path.exists(os.path.join(workdir, "loss_curve.png"))
  # Scripts with absl flags run as scripts: importing two of them in one process would define
  # their shared flag names (--seed, --out, ...) twice.
  out = tmp_path / "nll.json"
  run_python(["experiments/nll.py", f"--workdir={workdir}", "--iw_samples=10", "--num_test=50",
              "--batch_size=25", "--iw_chunk=5", f"--out={out}"])
  result = json.loads(out.read_text())
  assert (result["num_test"], result["iw_samples"], result["iw_chunk"]) == (50, 10, 5)
  assert (result["model"], result["family"]) == ("vae_mlp", "vae")
  assert result["step"] == int(state.step) > 0  # the evaluated checkpoint is the last one
  assert 0 < result["nll_nats"] < 784 * np.log(2)  # better than a coin per pixel
  assert result["bits_per_dim"] == pytest.approx(result["nll_nats"] / 784 / np.log(2))

  # An evaluation split in two (--start) and merged gives the whole one's numbers; a start
  # off the batch grid is refused. One fresh process imports the script's functions.
  code = f"""
import json
from experiments import nll
kw = dict(iw_samples=10, batch_size=25, iw_chunk=5, per_image=True)
whole = nll.test_nll({workdir!r}, num_test=50, **kw)
parts = [nll.test_nll({workdir!r}, start=s, num_test=25, **kw) for s in (25, 0)]
for i, part in enumerate(parts):
  with open({str(tmp_path)!r} + f'/part{{i}}.json', 'w') as f:
    json.dump(part, f)
merged = nll.merged([{str(tmp_path)!r} + f'/part{{i}}.json' for i in (0, 1)])
try:
  nll.test_nll({workdir!r}, start=10, num_test=25, **kw)
  error = ''
except ValueError as e:
  error = str(e)
print(json.dumps(dict(whole=whole, parts=parts, merged=merged, error=error)))
"""
  out = json.loads(run_python(code).stdout.strip().splitlines()[-1])
  whole, parts, merged = out["whole"], out["parts"], out["merged"]
  assert whole["nll_nats"] == pytest.approx(result["nll_nats"], rel=1e-6)
  np.testing.assert_allclose(parts[0]["log_likelihoods"], whole["log_likelihoods"][25:],
                             rtol=1e-6)
  np.testing.assert_allclose(parts[1]["log_likelihoods"], whole["log_likelihoods"][:25],
                             rtol=1e-6)
  assert (merged["start"], merged["num_test"], merged["contiguous"]) == (0, 50, True)
  assert merged["family"] == "vae"
  assert merged["nll_nats"] == pytest.approx(whole["nll_nats"], rel=1e-6)
  assert merged["sem_nats"] == pytest.approx(whole["sem_nats"], rel=1e-4)
  assert "multiple of --batch_size=25" in out["error"]
