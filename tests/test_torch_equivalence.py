"""genjax's reference GAN step is the PyTorch tutorial's step: same weights, same batch, same
z -> the same losses and the same parameters after one D_train + G_train (Adam 2e-4).

Dropout is off on both sides (their masks cannot be shared); everything else is the
tutorial's. Needs torch (the optional `bench` extra): skipped without it.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch (the optional 'bench' extra) is not "
                            "installed: the PyTorch tutorial step cannot be compared.")

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position

from experiments.benchmarks import torch_tutorial  # pylint: disable=wrong-import-position
from experiments.configs.mlp_gan import get_config  # pylint: disable=wrong-import-position
from genjax import config as config_lib  # pylint: disable=wrong-import-position
from genjax import data as data_lib  # pylint: disable=wrong-import-position
from genjax.train.task import get_task  # pylint: disable=wrong-import-position
from tests import torch_weights as tw  # pylint: disable=wrong-import-position


def _max_diff(module, params):
  return max(float(np.abs(getattr(module, f"fc{i + 1}").weight.data.numpy().T
                          - np.asarray(params["params"][f"Dense_{i}"]["kernel"])).max())
             for i in range(4))


def test_one_step_matches_the_pytorch_tutorial(monkeypatch):
  config = config_lib.override(get_config(""), {"model_args.dropout_rate": 0.0})
  task = get_task(config)
  real = data_lib.to_float(data_lib.load("digits", "train").images[:64])
  state = jax.jit(task.init)(jax.random.PRNGKey(0), {"image": real[:1]})
  # The step's noise: z for D_train, then fresh z for G_train (genjax.train.gan.step).
  k_zd, _, k_zg, _ = jax.random.split(jax.random.fold_in(state.key, state.step), 4)
  noise = [torch.tensor(np.asarray(jax.random.normal(k, (64, 100)))) for k in (k_zd, k_zg)]

  G, D, _, _, criterion = torch_tutorial.build("cpu")
  D.eval()  # no dropout
  tw.load(G, tw.dense_stack(state.g_params["params"], 4))
  tw.load(D, tw.dense_stack(state.d_params["params"], 4))
  g_opt = torch.optim.Adam(G.parameters(), lr=2e-4)
  d_opt = torch.optim.Adam(D.parameters(), lr=2e-4)
  monkeypatch.setattr(torch, "randn", lambda *a, **k: noise.pop(0))
  x = torch.tensor(np.asarray(real)).reshape(64, -1)
  d_loss, g_loss = torch_tutorial._train_step(  # pylint: disable=protected-access
      torch, x, G, D, g_opt, d_opt, criterion, 100, "cpu")

  new, metrics = jax.jit(task.make_step(None))(
      state, {"image": real, "label": jnp.zeros(64, jnp.int32)})
  assert float(metrics["d_loss"]) == pytest.approx(d_loss, abs=1e-5)
  assert float(metrics["g_loss"]) == pytest.approx(g_loss, abs=1e-5)
  # One Adam step moves each weight by ~2e-4; the two agree to float32 rounding.
  assert _max_diff(G, new.g_params) < 1e-5
  assert _max_diff(D, new.d_params) < 1e-5
  assert _max_diff(G, state.g_params) > 1e-4  # and the step did move them
