"""The pure GAN step and the scan-fused epoch: it learns, it is one scan, it compiles once."""
import chex
import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax import data
from genjax.train import parallel
from genjax.train.loop import build


def _setup(num_examples=None, **overrides):
  config = config_lib.override(config_lib.base_config(), overrides)
  ds = data.load("digits", "train")
  ds = ds._replace(images=ds.images[:num_examples], labels=ds.labels[:num_examples])
  setup = build(config, ds.images)
  images, labels = parallel.to_device_dataset(ds.images, ds.labels, setup.mesh)
  state = parallel.put_replicated(setup.init(jax.random.PRNGKey(config.seed)), setup.mesh)
  return setup, state, images, labels, ds


def _sample_distances(setup, state, train_flat, test_flat):
  x = np.asarray(setup.task.sample(state, jax.random.PRNGKey(1), 500, None)).reshape(500, -1)
  mean_gap = np.sqrt(np.mean((x.mean(0) - test_flat.mean(0)) ** 2))
  d2 = (x ** 2).sum(1)[:, None] - 2 * x @ train_flat.T + (train_flat ** 2).sum(1)[None]
  nearest = np.sqrt(np.maximum(d2.min(1), 0)).mean()
  return mean_gap, nearest


def assert_same_trajectory(a, b):
  """Two train states reached by the same steps, up to float rounding. Not bitwise: XLA fuses
  a scan body differently from a lone jitted step (or an unrolled one), and Adam's
  normalisation magnifies that rounding where a gradient is near zero (seen: up to 8.9e-5,
  depending on CPU load, on 0.0075 % of a 4-step GAN state's 8.8M numbers). Against one
  step fewer, 44 % of them differ by more than 1e-5."""
  diff = np.concatenate([np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)).ravel()
                         for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)])
  assert (diff > 1e-5).mean() < 1e-3 and diff.max() < 2e-3, ((diff > 1e-5).mean(), diff.max())


def test_gan_learns_digits():
  """After 15 epochs (330 steps) on digits, G's samples move towards the data: the RMS gap
  between the sample and test mean images, and the mean distance from a sample to its nearest
  training image, both fall by at least 30 % from initialisation (measured: 45-53 % and
  39-46 % over seeds 0 and 1). An untrained or broken G outputs grey noise and fails both."""
  setup, state, images, labels, ds = _setup()
  test = data.load("digits", "test")
  train_flat = data.to_float(ds.images.astype(np.float32)).reshape(len(ds.images), -1)
  test_flat = data.to_float(test.images.astype(np.float32)).reshape(len(test.images), -1)
  mean0, near0 = _sample_distances(setup, state, train_flat, test_flat)
  epoch = parallel.make_epoch(setup.task, setup.mesh, "jit", 64)
  for _ in range(15):
    state, metrics = epoch(state, images, labels)
  mean1, near1 = _sample_distances(setup, state, train_flat, test_flat)
  assert int(state.step) == 15 * (len(ds.labels) // 64)
  assert np.all(np.isfinite(jax.device_get(metrics["g_loss"])))
  assert mean1 < 0.7 * mean0, (mean0, mean1)
  assert near1 < 0.7 * near0, (near0, near1)


def test_scanned_epoch_equals_a_loop_of_steps():
  setup, state, images, labels, _ = _setup(num_examples=256)
  state_copy = jax.tree.map(lambda x: x.copy(), state)
  epoch = parallel.make_epoch(setup.task, setup.mesh, "jit", 64)
  scanned, metrics = epoch(state, images, labels)

  step = jax.jit(setup.task.make_step(None))
  index = parallel.shuffled_batches(state_copy.key, state_copy.step, images.shape[0], 64)
  looped, losses = state_copy, []
  for idx in np.asarray(index):
    looped, m = step(looped, {"image": data.to_float(images[idx]), "label": labels[idx]})
    losses.append(float(m["d_loss"]))
  np.testing.assert_allclose(np.asarray(metrics["d_loss"]), losses, rtol=1e-5, atol=1e-6)
  assert_same_trajectory(scanned, looped)


def test_unrolled_epoch_equals_the_plain_scan():
  """Multi-step fusion (config.scan_unroll) changes the schedule, not the result: 5 steps
  (an unroll of 2 leaves a remainder step) with and without unrolling."""
  setup, state, images, labels, _ = _setup(num_examples=320)
  state_copy = jax.tree.map(lambda x: x.copy(), state)
  plain, m1 = parallel.make_epoch(setup.task, setup.mesh, "jit", 64)(state, images, labels)
  fused, m2 = parallel.make_epoch(setup.task, setup.mesh, "jit", 64, unroll=2,
                                  guard="parameters")(
      state_copy, images, labels)
  np.testing.assert_allclose(np.asarray(m1["d_loss"]), np.asarray(m2["d_loss"]), rtol=1e-5)
  assert int(m2["guard/bad_step"]) == -1
  assert_same_trajectory(plain, fused)


def test_epoch_compiles_once_and_donates_state():
  setup, state, images, labels, _ = _setup(num_examples=256)
  epoch = parallel.make_epoch(setup.task, setup.mesh, "jit", 64)
  old = state
  for _ in range(3):
    state, _ = epoch(state, images, labels)
  assert epoch._cache_size() == 1  # Three epochs, one compilation.
  assert old.g_params["params"]["Dense_0"]["kernel"].is_deleted()  # Donated.

  step = jax.jit(chex.assert_max_traces(setup.task.make_step(None), n=1))
  batch = {"image": data.to_float(images[:64]), "label": labels[:64]}
  for _ in range(3):
    state, _ = step(state, batch)  # A retrace would raise.


def test_step_uses_fresh_keys_each_step():
  setup, state, images, labels, _ = _setup(num_examples=128)
  step = jax.jit(setup.task.make_step(None))
  batch = {"image": data.to_float(images[:64]), "label": labels[:64]}
  s1, m1 = step(state, batch)
  s2, m2 = step(s1.replace(g_params=state.g_params, d_params=state.d_params,
                           g_opt=state.g_opt, d_opt=state.d_opt), batch)
  # Same params and batch, next step number: different noise and dropout, different loss.
  assert float(m1["d_loss"]) != float(m2["d_loss"])


def test_batch_larger_than_dataset_is_a_clear_error():
  config = config_lib.override(config_lib.base_config(), {"batch_size": 4096})
  with pytest.raises(ValueError, match="batch_size 4096 exceeds the 1438 training examples"):
    config_lib.steps_per_epoch(config, 1438)


def test_xla_options_reach_the_epoch_and_bad_ones_are_one_clear_error(monkeypatch):
  """config.xla_options compile into the loop's epoch (jax.jit's compiler_options): an
  option XLA does not know, or a bad value, is refused before training, naming the key; a
  GPU-only option compiles on the CPU, where it leaves the epoch's result as it was."""
  from genjax.train import loop  # pylint: disable=import-outside-toplevel
  setup, state, images, labels, _ = _setup(num_examples=192)
  state_copy = jax.tree.map(lambda x: x.copy(), state)
  plain, _ = loop.make_epoch_fn(setup)(state, images, labels)
  concurrent = setup._replace(config=config_lib.override(setup.config, {
      "xla_options": "xla_gpu_command_buffer_scheduling_mode=CONCURRENT"}))
  other, _ = loop.make_epoch_fn(concurrent)(state_copy, images, labels)
  assert_same_trajectory(plain, other)
  for bad, message in (("xla_no_such_option=1", "No such compile option"),
                       ("xla_gpu_command_buffer_scheduling_mode=SOMETIMES",
                        "not a valid enum value")):
    with pytest.raises(ValueError, match=f"config.xla_options='{bad}': XLA refused it.*"
                                         f"{message}"):
      loop.make_epoch_fn(setup._replace(config=config_lib.override(
          setup.config, {"xla_options": bad})))
  # The options reach the epoch's own jit: past the check, XLA refuses a bad value there.
  monkeypatch.setattr(loop, "checked_compiler_options", lambda _: {
      "xla_gpu_command_buffer_scheduling_mode": "SOMETIMES"})
  with pytest.raises(jax.errors.JaxRuntimeError, match="SOMETIMES' is not a valid enum"):
    loop.make_epoch_fn(setup)(plain, images, labels)
