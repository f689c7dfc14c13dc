"""Shared tiny setups for the GAN zoo tests (not a test module itself)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax import config as config_lib
from genjax.train.task import get_task

B = 8


def tiny_config(**values):
  """A tiny conv GAN config: width 8, batch 8."""
  c = config_lib.base_config()
  c.model = "dcgan"
  c.model_args.width = 8
  c.model_args.dropout_rate = 0.0
  c.batch_size = B
  c.latent_dim = 8
  return config_lib.override(c, values)


def toy_batches(steps: int, seed: int = 0) -> dict:
  """Structured fake 'digits': a bright bar whose row depends on the label. [steps, B, ...]"""
  rng = np.random.RandomState(seed)
  labels = rng.randint(0, 10, (steps, B)).astype(np.int32)
  images = -np.ones((steps, B, 28, 28, 1), np.float32)
  for s in range(steps):
    for b in range(B):
      row = 3 + 2 * labels[s, b]
      images[s, b, row:row + 3, 6:22] = 1.0
  images += 0.05 * rng.randn(*images.shape).astype(np.float32)
  return {"image": jnp.asarray(np.clip(images, -1, 1)), "label": jnp.asarray(labels)}


def init_state(task, seed: int = 0, batch: dict | None = None):
  """`task`'s fresh state for `batch` (default: the first toy batch), from one jitted init as
  the loop makes it: op by op, a conv GAN's init compiles each operation on its own (~10 s
  more in a fresh process)."""
  if batch is None:
    batch = jax.tree.map(lambda a: a[0], toy_batches(1))
  return jax.jit(task.init)(jax.random.PRNGKey(seed), batch)


def run_steps(config, steps: int, seed: int = 0):
  """Trains `steps` steps with one jitted scan; returns (task, state, metrics[steps])."""
  task = get_task(config)
  data = toy_batches(steps, seed)
  state = init_state(task, seed, jax.tree.map(lambda a: a[0], data))
  state, metrics = jax.jit(lambda s, d: jax.lax.scan(task.make_step(None), s, d))(state, data)
  return task, state, jax.device_get(metrics)


def falls(series, k: int = 3) -> bool:
  series = np.asarray(series)
  return float(np.mean(series[-k:])) < float(np.mean(series[:k]))
