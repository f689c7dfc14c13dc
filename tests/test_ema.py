"""The parameters' moving average (config.ema_decay), an optax stage after the optimizer:
training is unchanged, the average is the textbook recursion, sampling and scoring use it
unless told not to, it rides through the loop's checkpoints and the evaluation scripts, and
turning it off leaves the optimizer (and old checkpoints) as they were."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genjax import config as config_lib
from genjax import data
from genjax.checkpoint import CheckpointMismatchError
from genjax.train import ema as ema_lib
from genjax.train.task import get_task
from tests.conftest import run_python
from tests.gan_zoo_helpers import toy_batches


def _vae_config(**overrides):
  c = config_lib.base_config()
  c.family, c.model, c.model_args = "vae", "vae_mlp", {"hidden": (32,)}
  c.latent_dim, c.lr = 4, 3e-3
  return config_lib.override(c, overrides)


def _steps(config, batch, steps):
  """The states after each of `steps` jitted steps (one compiled step, a Python loop)."""
  task = get_task(config)
  state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
  step = jax.jit(task.make_step(None))
  states = [state]
  for _ in range(steps):
    states.append(step(states[-1], batch)[0])
  return task, jax.device_get(states)


def test_decay_schedule_and_bad_values():
  assert [round(float(ema_lib.decay_at(s, 0.999)), 6) for s in (0, 1, 90, 10 ** 6)] == [
      0.1, round(2 / 11, 6), 0.91, 0.999]
  adam = optax.adam(1e-3)
  assert ema_lib.with_average(adam, 0.0) is adam  # Off: the same optimizer, the same state.
  with pytest.raises(ValueError, match="ema_decay must lie in"):
    ema_lib.param_average(1.0)
  with pytest.raises(ValueError, match="needs the parameters"):
    tx = ema_lib.param_average(0.5)
    tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
  with pytest.raises(ValueError, match="ema_decay must lie in"):
    config_lib.validate(_vae_config(ema_decay=-0.1))


def test_average_is_the_recursion_and_training_is_unchanged():
  batch = {"image": jnp.asarray(data.to_float(data.load("digits", "train").images[:16]))}
  decay, steps = 0.5, 4
  _, plain = _steps(_vae_config(), batch, steps)
  task, kept = _steps(_vae_config(ema_decay=decay), batch, steps)
  assert not ema_lib.has_average(plain[0].opt) and ema_lib.has_average(kept[0].opt)
  for a, b in zip(plain, kept, strict=True):  # Every step's parameters and Adam state, bit for bit.
    same = jax.tree.map(np.array_equal, (a.params, a.opt), (b.params, b.opt[0]))
    assert all(jax.tree.leaves(same))
  expected = kept[0].params  # average_0 = the initial parameters
  for t in range(steps):
    d = min(decay, (1 + t) / (10 + t))
    expected = jax.tree.map(lambda e, p: d * e + (1 - d) * p, expected, kept[t + 1].params)
  average = ema_lib.sampling_params(None, kept[-1].opt)
  for got, want in zip(jax.tree.leaves(average), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  # Samples come from the average; `choose(state, False)` gives the last parameters'.
  last = kept[-1]
  key = jax.random.PRNGKey(3)
  with_avg = task.sample(last, key, 4, None)
  by_hand = task.sample(plain[-1].replace(params=average), key, 4, None)
  np.testing.assert_array_equal(with_avg, by_hand)
  raw = task.sample(ema_lib.choose(last, False), key, 4, None)
  np.testing.assert_array_equal(raw, task.sample(plain[-1], key, 4, None))
  assert not np.array_equal(with_avg, raw)


def test_gan_averages_the_generator_only():
  c = config_lib.override(config_lib.base_config(), {"ema_decay": 0.9, "batch_size": 8})
  batch = jax.tree.map(lambda a: a[0], toy_batches(1))
  _, states = _steps(c, batch, 2)
  first, last = states[0], states[-1]
  assert ema_lib.has_average(last.g_opt) and not ema_lib.has_average(last.d_opt)
  average = lambda s: ema_lib.sampling_params(None, s.g_opt)
  assert jax.tree.structure(average(last)) == jax.tree.structure(last.g_params)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(average(first)),
                                                  jax.tree.leaves(first.g_params), strict=True))
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(average(last)),
                                                    jax.tree.leaves(last.g_params), strict=True)]
  assert any(moved)
  raw = ema_lib.choose(last, False)
  assert not ema_lib.has_average(raw.g_opt) and ema_lib.has_average(last.g_opt)


def test_loop_checkpoints_the_average_and_the_scripts_choose(tmp_path):
  from experiments.configs import vae_mlp  # pylint: disable=import-outside-toplevel
  from genjax.train.loop import load_trained, train  # pylint: disable=import-outside-toplevel

  workdir = str(tmp_path / "vae")
  config = config_lib.override(vae_mlp.get_config("smoke"), {"ema_decay": 0.9, "epochs": 1})
  state = train(config, workdir, quiet=True)
  restored = load_trained(workdir)[2]
  assert ema_lib.has_average(restored.opt)
  same = jax.tree.map(np.array_equal, jax.device_get(state.opt), jax.device_get(restored.opt))
  assert all(jax.tree.leaves(same))
  from genjax.sampling import export_samples  # pylint: disable=import-outside-toplevel
  exported = {e: export_samples(workdir, 8, str(tmp_path / f"{e}.npz"), ema=e)["images"]
              for e in (True, False)}
  assert not np.array_equal(exported[True], exported[False])
  code = f"""
import json
from experiments import nll
kw = dict(iw_samples=4, num_test=20, batch_size=20, iw_chunk=4)
print(json.dumps([nll.test_nll({workdir!r}, ema=e, **kw) for e in (True, False)]))
"""
  averaged, last = json.loads(run_python(code).stdout.strip().splitlines()[-1])
  assert (averaged["params"], last["params"]) == ("moving average", "last")
  assert averaged["nll_nats"] != last["nll_nats"]


def test_a_run_checkpointed_without_an_average_resumes_with_one(tmp_path):
  from experiments.configs import vae_mlp  # pylint: disable=import-outside-toplevel
  from genjax.train.loop import train  # pylint: disable=import-outside-toplevel

  base = config_lib.override(vae_mlp.get_config("smoke"), {"epochs": 2, "sample_every": 10})
  straight = train(base, str(tmp_path / "straight"), quiet=True)
  workdir = str(tmp_path / "resumed")
  train(config_lib.override(base, {"epochs": 1}), workdir, quiet=True)
  resumed = train(config_lib.override(base, {"ema_decay": 0.9}), workdir, quiet=True)
  # Training went on as if nothing had changed; the average counts the second epoch's steps.
  same = jax.tree.map(np.array_equal, jax.device_get((straight.params, straight.opt)),
                      jax.device_get((resumed.params, resumed.opt[0])))
  assert all(jax.tree.leaves(same))
  average = resumed.opt[1]
  assert isinstance(average, ema_lib.ParamAverageState)
  assert 0 < int(average.count) == int(resumed.step) // 2
  moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(average.average),
                                                    jax.tree.leaves(resumed.params), strict=True)]
  assert any(moved)
  # Another model is still a mismatch, average or not.
  other = config_lib.override(base, {"ema_decay": 0.9, "latent_dim": base.latent_dim + 1})
  with pytest.raises(CheckpointMismatchError):
    train(other, workdir, quiet=True)
  saved = config_lib.load_workdir_config(workdir)  # The refused config did not replace it.
  assert (saved.latent_dim, saved.ema_decay) == (base.latent_dim, 0.9)
  # A finished run given the flag trains no epoch and saves nothing; its config now asks for
  # the average, and the scripts' loader starts one at the checkpoint's parameters too.
  finished = str(tmp_path / "straight")
  train(config_lib.override(base, {"ema_decay": 0.9}), finished, quiet=True)
  from genjax.train.loop import load_trained  # pylint: disable=import-outside-toplevel
  loaded = load_trained(finished)[2]
  assert config_lib.load_workdir_config(finished).ema_decay == 0.9
  assert int(loaded.opt[1].count) == 0 and all(jax.tree.leaves(jax.tree.map(
      np.array_equal, jax.device_get(loaded.opt[1].average), jax.device_get(straight.params))))
