"""A run started from another run's parameters (config.init_from): the parameters and
statistics come over, the optimizer, step and key start fresh, a moving average starts at the
loaded parameters; another model or a folder without checkpoints is refused by name."""
import jax
import numpy as np
import pytest

from genjax import config as config_lib
from genjax.train import ema as ema_lib
from genjax.train.task import get_task
from genjax.train.warm_start import WarmStartError, parameter_fields, warm_start
from tests.gan_zoo_helpers import init_state, tiny_config


def _equal(a, b) -> bool:
  return all(jax.tree.leaves(jax.tree.map(np.array_equal, jax.device_get(a),
                                          jax.device_get(b))))


def test_warm_start_copies_parameters_and_statistics_only():
  config = tiny_config(model="cgan", spectral_norm=True, ema_decay=0.9)  # D keeps stats.
  task = get_task(config)
  fresh, source = (jax.device_get(init_state(task, s)) for s in (0, 1))
  assert parameter_fields(fresh) == ["g_params", "d_params", "g_stats", "d_stats"]
  source = source.replace(step=source.step + 7)
  state = warm_start(fresh, source)
  for name in parameter_fields(fresh):
    assert _equal(getattr(state, name), getattr(source, name))
    assert not _equal(getattr(state, name), getattr(fresh, name)) or name == "g_stats"
  assert _equal((state.step, state.key, state.d_opt, state.ada),
                (fresh.step, fresh.key, fresh.d_opt, fresh.ada))
  assert _equal(state.g_opt[0], fresh.g_opt[0])  # Adam's moments: zero, count 0.
  average = ema_lib.sampling_params(state.g_params, state.g_opt)
  assert _equal(average, source.g_params) and int(state.g_opt[1].count) == 0
  wider = get_task(tiny_config(model="cgan", spectral_norm=True, **{"model_args.width": 16}))
  with pytest.raises(WarmStartError, match="g_params of .* do not fit this model"):
    warm_start(fresh, jax.device_get(init_state(wider)))


def test_loop_starts_from_another_runs_parameters_with_a_new_optimizer(tmp_path):
  from experiments.configs import vae_mlp  # pylint: disable=import-outside-toplevel
  from genjax.train.loop import train  # pylint: disable=import-outside-toplevel

  base = config_lib.override(vae_mlp.get_config("smoke"), {"epochs": 1, "sample_every": 10})
  first = train(base, str(tmp_path / "first"), quiet=True)
  # A decaying rate (here from 0, so the parameters cannot move) and an average: another
  # optimizer state, which the first run's checkpoints could not resume.
  second_config = config_lib.override(base, {
      "init_from": str(tmp_path / "first"), "lr": 0.0, "lr_halflife_steps": 5,
      "ema_decay": 0.9})
  second = train(second_config, str(tmp_path / "second"), quiet=True)
  assert _equal(second.params, first.params)
  # The average of unmoving parameters p: s * p + (1 - s) * p, p up to a rounding (exactly p
  # where the compiler fuses it into one multiply-add).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=0),
               ema_lib.sampling_params(second.params, second.opt), first.params)
  assert int(second.step) == int(first.step)  # Its own steps, counted from 0.
  assert jax.tree.structure(second.opt) != jax.tree.structure(first.opt)
  # Resumed from its own checkpoint from now on: init_from is not read again.
  again = train(config_lib.override(second_config, {"epochs": 2, "init_from": "/nonexistent"}),
                str(tmp_path / "second"), quiet=True)
  assert int(again.step) == 2 * int(first.step)
  with pytest.raises(WarmStartError, match="no checkpoints/ there"):
    train(config_lib.override(base, {"init_from": str(tmp_path)}), str(tmp_path / "third"),
          quiet=True)
  with pytest.raises(WarmStartError, match="params of .* do not fit this model"):
    train(config_lib.override(base, {"init_from": str(tmp_path / "first"),
                                     "latent_dim": base.latent_dim + 1}),
          str(tmp_path / "fourth"), quiet=True)
