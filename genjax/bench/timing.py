"""Wall-clock timing of genjax's own jitted epoch, compile time kept apart from steady state.

What is timed is exactly what `genjax.train.loop.train` runs per epoch:
`parallel.make_epoch` (one `lax.scan` over the device-resident split, shuffled on device, the
state donated). Compilation is done explicitly with `.lower(...).compile()` so its cost is
measured on its own; the first executed epoch is then a warm-up (allocation, thread pools)
and the following `repeats` epochs are the steady state. "Steps/s of any config's step" is
the same measurement on a split cut to `steps * batch_size` examples.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from genjax import config as config_lib
from genjax.train import loop, parallel


class EpochTiming(NamedTuple):
  compile_s: float          # lower + compile of the jitted epoch
  warmup_s: float | None    # the first executed epoch (not in the steady state), if run
  epoch_s: list[float]      # steady-state epochs, one entry per repeat
  steps_per_epoch: int
  batch_size: int
  num_devices: int

  @property
  def median_epoch_s(self) -> float:
    return statistics.median(self.epoch_s)

  @property
  def steps_per_s(self) -> float:
    return self.steps_per_epoch / self.median_epoch_s

  @property
  def examples_per_s(self) -> float:
    return self.steps_per_epoch * self.batch_size / self.median_epoch_s

  def as_dict(self) -> dict[str, Any]:
    return {"compile_s": self.compile_s, "warmup_s": self.warmup_s, "epoch_s": self.epoch_s,
            "median_epoch_s": self.median_epoch_s, "steps_per_epoch": self.steps_per_epoch,
            "steps_per_s": self.steps_per_s, "examples_per_s": self.examples_per_s,
            "batch_size": self.batch_size, "num_devices": self.num_devices}


def _block(tree) -> None:
  jax.tree.map(lambda x: x.block_until_ready(), tree)


def time_epoch(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray,
               *, repeats: int = 2, steps: int = 0, warmup: bool = True) -> EpochTiming:
  """Times `config`'s jitted epoch on `images` (uint8 [N,H,W,C]) and `labels` (int [N]).

  Args:
    config: any genjax config (its task, model, batch size, dtype and parallel mode).
    images, labels: the training split, put on the devices once (as the loop does).
    repeats: steady-state epochs to time after the warm-up epoch.
    steps: if > 0, cut the split to `steps` whole batches, at most one epoch (steps/s of a
      config's step without paying for a full epoch).
    warmup: run one untimed epoch first. Compilation is already excluded, so on long epochs
      the warm-up changes little and can be skipped to halve the run time.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}.")
  config_lib.steps_per_epoch(config, len(labels))  # One clear error if no batch fits.
  if steps > 0:  # Capped at one epoch's worth of whole batches.
    n = min(steps * config.batch_size, len(labels) - len(labels) % config.batch_size)
    images, labels = images[:n], labels[:n]
  setup = loop.build(config, images)
  steps_per_epoch = config_lib.steps_per_epoch(config, len(labels))
  dev_images, dev_labels = parallel.to_device_dataset(images, labels, setup.mesh)
  state = parallel.put_replicated(setup.init(jax.random.PRNGKey(config.seed)), setup.mesh)
  # The loop's own epoch: NaN/Inf-guarded unless the config turns the guard off.
  epoch_fn = loop.make_epoch_fn(setup)
  _block((state, dev_images, dev_labels))

  t0 = time.perf_counter()
  compiled = epoch_fn.lower(state, dev_images, dev_labels).compile()
  compile_s = time.perf_counter() - t0

  def run_once(state):
    t = time.perf_counter()
    state, metrics = compiled(state, dev_images, dev_labels)
    _block((state, metrics))
    return state, time.perf_counter() - t

  warmup_s = None
  if warmup:
    state, warmup_s = run_once(state)
  times = []
  for _ in range(repeats):
    state, dt = run_once(state)
    times.append(dt)
  return EpochTiming(compile_s, warmup_s, times, steps_per_epoch, config.batch_size,
                     setup.mesh.shape[parallel.AXIS])


def cost_analysis(config: ml_collections.ConfigDict, images: np.ndarray, labels: np.ndarray
                  ) -> dict[str, float]:
  """XLA's static cost estimate (flops, bytes accessed) of one jitted epoch of `config` (the
  training loop's, its NaN guard included)."""
  setup = loop.build(config, images)
  dev_images, dev_labels = parallel.to_device_dataset(images, labels, setup.mesh)
  state = jax.eval_shape(setup.init, jax.random.PRNGKey(0))
  rep = parallel.replicated(setup.mesh)
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), state)
  epoch_fn = loop.make_epoch_fn(setup)
  cost = epoch_fn.lower(state, dev_images, dev_labels).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return {k: float(v) for k, v in (cost or {}).items()
          if k in ("flops", "bytes accessed", "transcendentals")}
