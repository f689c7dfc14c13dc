"""The one GAN step: default reproduces the MLP GAN, every model x loss trains, options work."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.train.task import get_task
from tests.gan_zoo_helpers import falls, init_state, run_steps, tiny_config, toy_batches

# The foundation step's metrics (commit c089102) for the default config: 3 steps on
# uniform noise images, init key 0. The extended step must reproduce them.
GOLDEN = [(0.4986632466316223, 1.3723797798156738, 0.5056782960891724, 0.6946877241134644),
          (0.5018727779388428, 1.3538422584533691, 0.5184727907180786, 0.6892508864402771),
          (0.5044540762901306, 1.3380452394485474, 0.5294941067695618, 0.6829467415809631)]


def test_default_config_reproduces_the_foundation_step():
  task = get_task(config_lib.base_config())
  img = jax.random.uniform(jax.random.PRNGKey(1), (3, 16, 28, 28, 1), minval=-1, maxval=1)
  lab = jnp.zeros((3, 16), jnp.int32)
  state = jax.jit(task.init)(jax.random.PRNGKey(0), {"image": img[0], "label": lab[0]})
  step = jax.jit(task.make_step(None))
  for i, expected in enumerate(GOLDEN):
    state, m = step(state, {"image": img[i], "label": lab[i]})
    got = tuple(float(m[k]) for k in ("d_fake", "d_loss", "d_real", "g_loss"))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert set(m) == {"d_fake", "d_loss", "d_real", "g_loss"}


# Each case compiles one step, so cases are combined: NS is the golden MLP step above and
# the R1/ADA case; minimax's D loss is NS's, so minimax is tested through G below.
@pytest.mark.parametrize("model,loss,extra", [
    ("dcgan", "least_squares", {}),
    ("cgan", "hinge", {"spectral_norm": True}),
    ("cgan", "wasserstein", {"gp_weight": 10.0, "n_critic": 2}),
    ("dcgan", "non_saturating", {"r1_gamma": 1.0, "ada": True, "ada_p_init": 0.5}),
])
def test_discriminator_loss_falls_against_a_fixed_generator(model, loss, extra):
  # lr_g = 0 freezes G, so D faces a fixed task and its loss must fall.
  steps = 8
  task, state, m = run_steps(
      tiny_config(model=model, loss=loss, lr_g=0.0, lr_d=1e-3, **extra), steps)
  assert np.all(np.isfinite(m["d_loss"]))
  assert falls(m["d_loss"]), m["d_loss"]
  if loss == "wasserstein":  # d_real / d_fake are the critic's raw scores: their gap is the loss.
    np.testing.assert_allclose(m["d_loss"], m["d_fake"] - m["d_real"], rtol=1e-5, atol=1e-6)
  for key, on in (("r1", "r1_gamma"), ("gp", "gp_weight"), ("ada_p", "ada")):
    assert (key in m) == bool(extra.get(on)), (key, sorted(m))
  # n_critic D updates per step: Adam's step count is steps * n_critic.
  counts = {int(x) for x in jax.tree.leaves(state.d_opt) if jnp.ndim(x) == 0}
  assert counts == {steps * extra.get("n_critic", 1)}, counts
  if extra.get("spectral_norm"):  # The power-iteration vectors ride in d_stats and move.
    fresh = init_state(task)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.d_stats,
                         fresh.d_stats)
    assert "batch_stats" in state.d_stats and max(jax.tree.leaves(moved)) > 0


@pytest.mark.parametrize("model,loss", [("dcgan", "minimax"), ("cgan", "least_squares"),
                                        ("mlp_gan", "hinge")])
def test_generator_loss_falls_against_a_fixed_discriminator(model, loss):
  values = {"model": model, "loss": loss, "lr_d": 0.0, "lr_g": 1e-3}
  if model == "mlp_gan":
    values.update({"latent_dim": 100, "model_args.dropout_rate": 0.0})
  _, _, m = run_steps(tiny_config(**values), 8)
  assert falls(m["g_loss"]), m["g_loss"]


def test_spectral_norm_on_the_mlp_gan_is_a_clear_error():
  with pytest.raises(ValueError, match="spectral_norm"):
    get_task(tiny_config(model="mlp_gan", spectral_norm=True, latent_dim=100))


def test_bad_stabiliser_values_raise_naming_the_key():
  for key, value in (("n_critic", 0), ("r1_gamma", -1.0), ("ada_p_init", 2.0)):
    with pytest.raises(ValueError, match=key):
      config_lib.validate(tiny_config(**{key: value}))


@pytest.mark.parametrize("model", ["mlp_gan", "cgan"])
def test_d_joint_batch_equals_the_two_pass_step_without_dropout(model):
  """`d_joint_batch` runs D once on [real; fake] (labels repeated for the cGAN): without
  dropout, the only randomness D draws, three steps equal the two-pass steps'. (The cGAN's
  G is compared by its losses only: the biases before its batch norms get gradients of pure
  rounding noise, which Adam scales up to full steps, differently for any change of
  summation order.)"""
  runs = []
  for joint in (False, True):
    _, state, m = run_steps(tiny_config(model=model, lr_d=1e-3, loss="least_squares",
                                        d_joint_batch=joint), 3)
    runs.append((m, state.d_params, state.d_opt) + ((state.g_params,) if model == "mlp_gan"
                                                     else ()))
  for x, y in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1]), strict=True):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


def test_d_joint_batch_trains_with_dropout_and_refuses_batch_statistics():
  c = tiny_config(model="mlp_gan", lr_g=0.0, lr_d=1e-3, d_joint_batch=True)
  c.model_args.dropout_rate = 0.3  # The tutorial's D: masks over the joint batch.
  _, _, m = run_steps(c, 8)
  assert falls(m["d_loss"]), m["d_loss"]
  # Its masks are its own (one draw for 2B rows): the flag did change the computation.
  _, _, two_pass = run_steps(config_lib.override(c, {"d_joint_batch": False}), 8)
  assert not np.allclose(m["d_loss"], two_pass["d_loss"])
  with pytest.raises(ValueError, match="d_joint_batch needs a discriminator without batch"):
    run_steps(tiny_config(spectral_norm=True, d_joint_batch=True), 1)


@pytest.mark.parametrize("d_joint", [False, True])
def test_g_joint_batch_equals_the_two_pass_step(d_joint):
  """`g_joint_batch` makes the fakes of D's update and of G's own in one pass of 2B and takes
  G's gradient back through it: the same z and dropout keys, so three steps of the tutorial's
  MLP GAN (D's dropout on) equal the two-pass steps' up to float rounding, alone and with
  `d_joint_batch`."""
  runs = []
  for joint in (False, True):
    c = tiny_config(model="mlp_gan", lr_d=1e-3, lr_g=1e-3, d_joint_batch=d_joint,
                    g_joint_batch=joint)
    c.model_args.dropout_rate = 0.3
    _, state, m = run_steps(c, 3)
    runs.append((m, state.d_params, state.g_params, state.d_opt, state.g_opt))
  for x, y in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1]), strict=True):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


def test_g_joint_batch_refuses_batch_statistics_and_several_critic_steps():
  with pytest.raises(ValueError, match="g_joint_batch needs a generator without batch"):
    run_steps(tiny_config(model="dcgan", g_joint_batch=True), 1)
  with pytest.raises(ValueError, match="g_joint_batch.*n_critic=2"):
    get_task(tiny_config(model="mlp_gan", g_joint_batch=True, n_critic=2))


def test_flatten_optimizer_is_the_per_leaf_adam_on_one_vector():
  """`flatten_optimizer` runs each network's Adam on one raveled vector: given the same
  gradients, three steps make the per-leaf Adam's updates; in the GAN step its moments are one
  flat vector per network. (Whole training runs are not compared: the two programs compile
  differently, so a gradient element that is a nearly cancelling sum can differ in its last
  bits, and Adam, dividing by the gradient's scale, turns that into up to a step size.)"""
  from genjax.train.task import adam  # pylint: disable=import-outside-toplevel

  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  params = {"w": jax.random.normal(keys[0], (5, 3)), "b": jnp.zeros(3)}
  grads = [{"w": scale * jax.random.normal(k, (5, 3)), "b": scale * jnp.arange(3.0)}
           for k, scale in zip(keys[1:], (1.0, 1e-3, 1e-7), strict=True)]

  def updates(flat: bool):
    tx = adam(tiny_config(flatten_optimizer=flat), 1e-3)
    state, out = tx.init(params), []
    for g in grads:
      u, state = jax.jit(tx.update)(g, state, params)
      out.append(u)
    return out

  for x, y in zip(jax.tree.leaves(updates(False)), jax.tree.leaves(updates(True)), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-12)
  _, state, m = run_steps(tiny_config(model="mlp_gan", lr_d=1e-3, ema_decay=0.9,
                                      flatten_optimizer=True), 3)
  assert [jnp.size(x) for x in jax.tree.leaves(state.d_opt) if jnp.ndim(x) > 0] == [
      sum(jnp.size(x) for x in jax.tree.leaves(state.d_params))] * 2
  assert all(np.isfinite(v).all() for v in m.values()), m


@pytest.mark.parametrize("ada", [True, False])
def test_r1_is_taken_at_the_real_images_before_augmentation(ada):
  """StyleGAN2-ADA's R1: (gamma/2) E ||d/dx D(augment(x))||^2 at the un-augmented real x,
  through the augmentation draw of D's real pass (the step's keys, re-derived here). At
  p = 1 every op is on: contrast and cutout make it differ from the gradient at augment(x).
  Without ADA it is the plain R1 at x."""
  from genjax.models import get_gan  # pylint: disable=import-outside-toplevel
  from genjax.train import ada as ada_lib, gan  # pylint: disable=import-outside-toplevel

  c = tiny_config(r1_gamma=2.0, ada=ada, ada_p_init=1.0)
  batch = jax.tree.map(lambda a: a[0], toy_batches(1))
  task = get_task(c)
  state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
  _, m = jax.jit(task.make_step(None))(state, batch)
  key = jax.random.fold_in(state.key, state.step)
  k_aug_d, _ = jax.random.split(jax.random.fold_in(key, gan.EXTRA_KEY_TAG))
  augment = lambda x: ada_lib.augment(x, jax.random.split(k_aug_d, 3)[0], state.ada.p)
  d = lambda x: jnp.sum(get_gan(c)[1].apply(state.d_params, x, train=True))  # No dropout.
  per_image = lambda grads: np.sum(np.asarray(grads) ** 2, axis=(1, 2, 3))  # gamma / 2 = 1.
  real = batch["image"]
  if not ada:
    np.testing.assert_allclose(float(m["r1"]), per_image(jax.grad(d)(real)).mean(), rtol=1e-6)
    return
  before = per_image(jax.grad(lambda x: d(augment(x)))(real))
  np.testing.assert_allclose(float(m["r1"]), before.mean(), rtol=1e-5)
  at_augmented = per_image(jax.grad(d)(augment(real)))
  assert np.max(np.abs(before / at_augmented - 1)) > 0.2, (before, at_augmented)
