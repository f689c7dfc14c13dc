"""What the host loop needs from a model family, as three pure functions.

A `Task` is to the loop what a `GradientTransformation` is to optax: pure functions over a
pytree state, no hidden state. Every task state carries `step` (int32 scalar) and `key`
(uint32[2]); the rest is the family's own.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import optax

from genjax.train import ema as ema_lib

Batch = dict  # {'image': f32[B,H,W,C] in [-1,1], 'label': i32[B]}


class Task(NamedTuple):
  # init(key, example_batch) -> state
  init: Callable[[jax.Array, Batch], Any]
  # make_step(axis_name) -> step(state, batch) -> (state, metrics). With an axis name the
  # step runs per device (shard_map) and averages its gradients over that axis.
  make_step: Callable[[str | None], Callable[[Any, Batch], tuple[Any, dict]]]
  # sample(state, key, num, labels) -> f32[num,H,W,C] in [-1,1]; labels may be None.
  sample: Callable[[Any, jax.Array, int, jax.Array | None], jax.Array]
  conditional: bool = False


def get_task(config) -> Task:
  """The task of `config.family`."""
  if config.family == "gan":
    from genjax.train.gan import make_gan_task  # pylint: disable=import-outside-toplevel

    return make_gan_task(config)
  if config.family == "vae":
    from genjax.train.vae import make_vae_task  # pylint: disable=import-outside-toplevel

    return make_vae_task(config)
  if config.family == "pixelcnn":
    from genjax.train.pixelcnn import make_pixelcnn_task  # pylint: disable=import-outside-toplevel

    return make_pixelcnn_task(config)
  raise ValueError(f"Unknown model family {config.family!r}.")


def per_device(tree, axis_name: str | None):
  """Marks replicated parameters as varying over `axis_name` before `jax.grad`.

  Inside `shard_map`, the gradient of a replicated (axis-invariant) input is summed over the
  axis automatically. Data parallelism wants each device's own gradient, averaged by
  `average_over`; casting the parameters to varying first gives exactly that.
  """
  return tree if axis_name is None else jax.lax.pcast(tree, axis_name, to="varying")


def average_over(tree, axis_name: str | None):
  """The mean over devices of a per-device pytree (identity without an axis)."""
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def adam(config, learning_rate) -> optax.GradientTransformation:
  """Adam(learning_rate, config.adam_b1, config.adam_b2); with config.flatten_optimizer over
  the parameters raveled into one vector (optax.flatten): the same arithmetic per element as
  one small update per leaf, for accelerators where a step is many small kernels."""
  tx = optax.adam(learning_rate, b1=config.adam_b1, b2=config.adam_b2)
  return optax.flatten(tx) if config.flatten_optimizer else tx


def likelihood_optimizer(config) -> optax.GradientTransformation:
  """Adam(config.lr) of the single-network tasks (VAE, PixelCNN); with
  config.lr_halflife_steps > 0 the rate halves smoothly every that many steps; with
  config.ema_decay > 0 it also keeps the parameters' moving average (genjax.train.ema)."""
  lr = config.lr
  if config.lr_halflife_steps:
    lr = optax.exponential_decay(config.lr, config.lr_halflife_steps, decay_rate=0.5)
  return ema_lib.with_average(adam(config, lr), config.ema_decay)


@flax.struct.dataclass
class ModelState:
  """The state of a single-network task trained by one optimizer (VAE, PixelCNN)."""
  step: jax.Array   # int32 []
  key: jax.Array    # uint32 [2]
  params: dict
  opt: optax.OptState
