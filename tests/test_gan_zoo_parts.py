"""Models, regularisers, ADA and the collapse detector, each on a toy."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import models
from genjax.checkpoint import Checkpointer, abstract_like
from genjax.train import ada as ada_lib
from genjax.config import base_config
from genjax.train import collapse, gan_presets, losses, regularizers
from genjax.train.task import get_task
from tests.gan_zoo_helpers import init_state, tiny_config, toy_batches


def _count(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def test_dcgan_shapes_and_parameter_counts():
  g, d = models.DCGenerator(latent_dim=8, width=8), models.DCDiscriminator(width=8)
  z, x = jnp.zeros((2, 8)), jnp.zeros((2, 28, 28, 1))
  gv, dv = g.init(jax.random.PRNGKey(0), z), d.init(jax.random.PRNGKey(1), x)
  assert g.apply(gv, z, train=False).shape == (2, 28, 28, 1)
  assert d.apply(dv, x).shape == (2,)
  w = 8  # Dense 8->7*7*32, ConvT 32->16 and 16->8 (4x4), Conv 8->1 (3x3), BN scale+bias.
  g_expected = (8 * 49 * 4 * w + 49 * 4 * w) + (16 * 4 * w * 2 * w + 2 * w) + (
      16 * 2 * w * w + w) + (9 * w + 1) + 2 * (4 * w + 2 * w + w)
  assert _count(gv["params"]) == g_expected
  d_expected = (16 * w + w) + (16 * w * 2 * w + 2 * w) + (49 * 2 * w + 1)
  assert _count(dv["params"]) == d_expected
  with pytest.raises(ValueError, match="DCDiscriminator expects input"):
    d.apply(dv, jnp.zeros((2, 28, 28)))


def test_conditional_sampling_obeys_labels():
  task = get_task(tiny_config(model="cgan"))
  assert task.conditional
  state = init_state(task)
  key = jax.random.PRNGKey(3)
  a = task.sample(state, key, 4, jnp.array([0, 1, 2, 3]))
  b = task.sample(state, key, 4, jnp.array([9, 1, 2, 3]))
  assert a.shape == (4, 28, 28, 1)
  assert float(jnp.max(jnp.abs(a[0] - b[0]))) > 0      # Label 0 vs 9: another image.
  np.testing.assert_allclose(a[1:], b[1:], atol=1e-6)  # Same z and label: same image.
  with pytest.raises(ValueError, match="labels of shape"):
    task.sample(state, key, 4, jnp.array([0, 1]))
  _, d = models.get_gan(tiny_config(model="cgan"))
  with pytest.raises(ValueError, match="class-conditional"):
    d.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))


def test_r1_and_gradient_penalty_match_hand_computation():
  # D(x) = sum(w * x) + sum(x^2): grad_x D = w + 2x, computed here by hand.
  rng = np.random.RandomState(0)
  w = jnp.asarray(rng.randn(3, 2, 2, 1), jnp.float32)
  x = jnp.asarray(rng.randn(4, 3, 2, 2, 1), jnp.float32)[:, 0]  # [4, 2, 2, 1]
  w = w[0]
  d_fn = lambda v: jnp.sum(w * v, axis=(1, 2, 3)) + jnp.sum(v ** 2, axis=(1, 2, 3))
  grads = np.asarray(w + 2 * x).reshape(4, -1)
  sq = np.sum(grads ** 2, axis=1)
  np.testing.assert_allclose(regularizers.r1_penalty(d_fn, x, 10.0), 5.0 * sq.mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(regularizers.gradient_penalty(d_fn, x, 10.0),
                             10.0 * np.mean((np.sqrt(sq) - 1) ** 2), rtol=1e-5)
  # Interpolates lie on the segment, one eps per sample.
  real, fake = jnp.ones((4, 2, 2, 1)), -jnp.ones((4, 2, 2, 1))
  x_hat = regularizers.interpolate(real, fake, jax.random.PRNGKey(0))
  per_sample = np.asarray(x_hat).reshape(4, -1)
  assert np.all(per_sample.max(1) == per_sample.min(1)) and np.all(np.abs(per_sample) <= 1)


def test_ada_p_rises_when_d_overfits_and_falls_when_it_does_not():
  ctl = ada_lib.ada(target=0.6, interval=2, kimg=0.001)  # p moves by count/1 per interval.
  state = ctl.init()
  confident = jnp.ones((4,))
  state, r_t = ctl.update(confident, state)
  assert float(state.p) == 0.0 and float(r_t) == 1.0   # Not yet at the interval.
  state, _ = ctl.update(confident, state)
  assert float(state.p) == 1.0                          # Clipped at 1.
  unsure = jnp.array([1.0, -1.0, -1.0, 1.0])
  state, _ = ctl.update(unsure, ctl.update(unsure, state)[0])
  assert float(state.p) == 0.0


def test_ada_augment_is_identity_at_p0_and_differentiable():
  x = toy_batches(1)["image"][0]
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(ada_lib.augment(x, key, jnp.float32(0.0)), x)
  y = ada_lib.augment(x, key, jnp.float32(1.0))
  assert y.shape == x.shape and float(jnp.mean(jnp.abs(y - x))) > 0.05
  g = jax.grad(lambda v: jnp.sum(ada_lib.augment(v, key, jnp.float32(1.0)) ** 2))(x)
  assert np.all(np.isfinite(g)) and float(jnp.sum(jnp.abs(g))) > 0


def test_ada_xflip_mirrors_with_probability_half_p():
  # ADA's xflip: with probability p a fair coin picks the orientation, so p/2 net.
  x = jnp.broadcast_to(jnp.array([0.0, 1.0])[None, None, :, None], (20000, 1, 2, 1))
  for p in (0.3, 0.5, 1.0):
    y = ada_lib.xflip(x, jax.random.PRNGKey(7), jnp.float32(p))
    assert set(np.unique(y[:, 0, 0, 0])) <= {0.0, 1.0}     # Whole images, mirrored or not.
    assert abs(float(jnp.mean(y[:, 0, 0, 0])) - p / 2) < 0.015, p


def test_ada_augment_keeps_the_orientation_of_an_asymmetric_image_below_p1():
  # A bar on the left. Were the flip applied with probability p (not p/2), at p = 0.5 an
  # image and its mirror image would augment to the same distribution: the flip would leak.
  x = (-jnp.ones((1, 28, 28, 1))).at[:, 4:24, 3:10].set(1.0)
  xs = jnp.repeat(x, 4000, 0)
  left_minus_right = lambda y: float(jnp.mean(y[:, :, :14]) - jnp.mean(y[:, :, 14:]))
  a = ada_lib.augment(xs, jax.random.PRNGKey(1), jnp.float32(0.5))
  b = ada_lib.augment(xs[:, :, ::-1], jax.random.PRNGKey(2), jnp.float32(0.5))
  assert left_minus_right(a) > 0.25 and left_minus_right(b) < -0.25   # Raw: +-0.71.


def test_ada_brightness_offset_has_adas_std_on_images_in_minus1_1():
  # Constant images: flips, translation and contrast leave them so, and cutout only lowers
  # pixels, so each image's maximum is 0 plus its brightness offset (all ops on at p = 1).
  y = ada_lib.augment(jnp.zeros((20000, 4, 4, 1)), jax.random.PRNGKey(3), jnp.float32(1.0))
  offsets = np.asarray(jnp.max(y, axis=(1, 2, 3)))
  assert abs(float(np.std(offsets)) - 0.2) < 0.01 and abs(float(np.mean(offsets))) < 0.01


def test_collapse_detector_fires_on_collapse_and_not_on_diversity():
  det = collapse.collapse_detector(patience=2)
  state = det.init()
  uniform = jnp.full((10,), 100.0)
  for _ in range(3):
    report, state = jax.jit(det.update)(uniform, state)
    assert not bool(report.fired)
  np.testing.assert_allclose(report.entropy, 1.0, rtol=1e-6)
  collapsed = jnp.array([900.0, 100.0] + [0.0] * 8)
  report, state = det.update(collapsed, state)
  assert not bool(report.fired) and float(report.coverage) == pytest.approx(0.2)
  report, state = det.update(collapsed, state)
  assert bool(report.fired) and bool(state.fired)
  with pytest.raises(ValueError, match="histogram"):
    det.update(jnp.ones((2, 5)), state)


def test_gan_state_round_trips_through_the_checkpointer(tmp_path):
  # The MLP state has empty g_stats/d_stats; the cGAN state has batch norm + SN stats.
  for values in ({"model": "mlp_gan", "latent_dim": 100}, {"model": "cgan",
                                                           "spectral_norm": True}):
    task = get_task(tiny_config(**values))
    state = init_state(task)
    with Checkpointer(str(tmp_path / values["model"])) as ckpt:
      ckpt.save(1, state, meta={"epoch": 1})
      ckpt.wait()
      restored, _ = ckpt.restore(abstract_like(state))
    jax.tree.map(np.testing.assert_array_equal, restored, state)


def test_minimax_generator_gradient_vanishes_when_d_rejects_fakes():
  # Shift D's output bias to -10: D(G(z)) ~ 5e-5, as when D wins. d/dlogit of the minimax
  # loss is sigmoid(logit) ~ 0; of the non-saturating loss, sigmoid(logit) - 1 ~ -1.
  from genjax.train.gan_diagnostics import generator_grad_norms  # pylint: disable=C0415
  c = tiny_config(model="mlp_gan", latent_dim=100)
  task = get_task(c)
  state = init_state(task)
  z = jax.random.normal(jax.random.PRNGKey(1), (32, 100))
  fair = generator_grad_norms(c, state, z, ("minimax", "non_saturating"))
  np.testing.assert_allclose(fair["minimax"], fair["non_saturating"], rtol=0.2)
  params = state.d_params["params"]
  last = sorted(params)[-1]
  params = {**params, last: {**params[last], "bias": params[last]["bias"] - 10.0}}
  won = generator_grad_norms(c, state.replace(d_params={"params": params}), z,
                             ("minimax", "non_saturating"))
  assert float(won["d_fake"]) < 1e-3
  assert float(won["non_saturating"]) > 1000 * float(won["minimax"])


def test_gan_losses_match_their_papers_in_probability_space():
  # float64 references on D = sigmoid(logit) (BCE) or on the raw output (LS a=0, b=c=1; hinge
  # of Lim & Ye / Miyato; Wasserstein). Saturated logits keep values and gradients finite.
  rng = np.random.RandomState(0)
  real, fake = (jnp.asarray(3 * rng.randn(64), jnp.float32) for _ in range(2))
  r, f = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  d_r, d_f = 1 / (1 + np.exp(-r)), 1 / (1 + np.exp(-f))
  bce_d = -np.mean(np.log(d_r)) - np.mean(np.log(1 - d_f))
  want = {"non_saturating": (bce_d, -np.mean(np.log(d_f))),
          "minimax": (bce_d, np.mean(np.log(1 - d_f))),
          "least_squares": (0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f ** 2),
                            0.5 * np.mean((f - 1) ** 2)),
          "hinge": (np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)), -np.mean(f)),
          "wasserstein": (np.mean(f) - np.mean(r), -np.mean(f))}
  assert sorted(want) == sorted(losses.LOSSES)
  saturated = jnp.array([100.0, -100.0])
  for name, (d_loss, g_loss) in want.items():
    loss = losses.get_loss(name)
    np.testing.assert_allclose(loss.d(real, fake), d_loss, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(loss.g(fake), g_loss, rtol=1e-5, err_msg=name)
    # D's answer as the loss reads it (the step's d_real / d_fake): a probability for BCE.
    bce = name in ("non_saturating", "minimax")
    np.testing.assert_allclose(loss.readout(real), d_r if bce else r, rtol=1e-5, err_msg=name)
    grads = jax.grad(lambda a, b: loss.d(a, b) + loss.g(b), (0, 1))(saturated, saturated)
    assert all(np.all(np.isfinite(g)) for g in grads), name


def test_penalties_match_per_sample_gradients_of_a_conditional_d():
  # A nonlinear class-conditional D; the reference takes each sample's input gradient alone.
  rng = np.random.RandomState(1)
  w, v = jnp.asarray(rng.randn(10, 48), jnp.float32), jnp.asarray(rng.randn(48), jnp.float32)
  d_one = lambda x, y: jnp.dot(jnp.tanh(x.reshape(-1) * w[y]), v) + 0.1 * jnp.sum(x ** 3)
  real, fake = (jnp.asarray(rng.randn(8, 4, 4, 3), jnp.float32) for _ in range(2))
  labels = jnp.asarray(rng.randint(0, 10, 8))
  d_fn = lambda x: jax.vmap(d_one)(x, labels)
  norms = lambda x: np.linalg.norm(np.asarray(jax.vmap(jax.grad(d_one))(x, labels),
                                              np.float64).reshape(8, -1), axis=1)
  np.testing.assert_allclose(regularizers.r1_penalty(d_fn, real, 10.0),
                             5.0 * np.mean(norms(real) ** 2), rtol=1e-5)
  key = jax.random.PRNGKey(2)
  x_hat = regularizers.interpolate(real, fake, key)
  eps = np.asarray(jax.random.uniform(key, (8, 1, 1, 1)))
  np.testing.assert_allclose(x_hat, eps * real + (1 - eps) * fake, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(regularizers.gradient_penalty(d_fn, x_hat, 10.0),
                             10.0 * np.mean((norms(x_hat) - 1) ** 2), rtol=1e-5)


def test_collapse_detector_warmup_drop_and_patience():
  # Warm-up records the best entropy; a drop below it counts as bad, with patience too.
  det = collapse.collapse_detector(min_entropy=0.0, min_coverage=0.0, max_drop=0.1,
                                   patience=2, warmup=1)
  state = det.init()
  uniform, skewed = jnp.full((4,), 25.0), jnp.array([55.0, 15.0, 15.0, 15.0])
  fired = []
  for hist in (uniform, skewed, skewed, uniform, skewed, skewed):
    report, state = det.update(hist, state)
    fired.append(bool(report.fired))
  assert float(report.entropy) < 0.9 and fired == [False, False, True, False, False, True]
  det = collapse.collapse_detector(patience=1, warmup=2)
  state = det.init()
  fired = []
  for _ in range(3):
    report, state = det.update(jnp.array([100.0, 0.0, 0.0]), state)
    fired.append(bool(report.fired))
  assert fired == [False, False, True]  # Updates 0 and 1 only record; update 2 fires.


def test_gan_presets_follow_wgan_gp_and_refuse_two_datasets():
  # Gulrajani et al. (Algorithm 1): lambda 10, n_critic 5, Adam(1e-4, beta1 0, beta2 0.9),
  # for the conv GANs (after DCGAN's beta1 0.5) and the MLP GAN alike.
  for c in (gan_presets.apply_options(base_config(), {"wgan_gp"}, "dcgan"),
            gan_presets.apply_loss_options(base_config(), {"wgan_gp"})):
    assert (c.loss, c.gp_weight, c.n_critic, c.lr_g, c.lr_d, c.adam_b1, c.adam_b2) == (
        "wasserstein", 10.0, 5, 1e-4, 1e-4, 0.0, 0.9)
  c = gan_presets.apply_options(base_config(), {"kmnist", "hinge", "sn", "ttur"}, "cgan")
  assert (c.dataset, c.loss, c.spectral_norm, c.lr_g, c.lr_d, c.adam_b1) == (
      "kmnist", "hinge", True, 1e-4, 4e-4, 0.5)
  with pytest.raises(ValueError, match="one loss option"):
    gan_presets.apply_options(base_config(), {"hinge", "ls"}, "dcgan")
  with pytest.raises(ValueError, match=r"one dataset option, got \['kmnist', 'mnist'\]"):
    gan_presets.apply_options(base_config(), {"mnist", "kmnist"}, "dcgan")
