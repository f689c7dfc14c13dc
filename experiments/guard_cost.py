"""What the NaN/Inf guard costs the MLP GAN epoch, variants interleaved in one process.

Variants: `none` (nan_policy='off'), `every_step` (every state group read every step, the
optimizer states included: the guard before 2026-11-29's third session), `guard`
(`nan_check='parameters'`, the default until 2026-12-01: metrics and parameters every step,
optimizer states once per epoch), `metrics` (`nan_check='metrics'`, the default since: the
losses every step, the whole state once per epoch). Each variant's epoch over the first STEPS
batches of MNIST is compiled once, run once untimed, then timed ROUNDS times in turn with the
others, so a drift of the machine's speed hits all of them alike.

  GENJAX_DATA_DIR=<data> PYTHONPATH=. python experiments/guard_cost.py float32 300 10 \
      [threefry2x32|philox2x32]
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs"))
import mlp_gan  # pylint: disable=wrong-import-position

from genjax import config as config_lib  # pylint: disable=wrong-import-position
from genjax import data as data_lib  # pylint: disable=wrong-import-position
from genjax.train import guard as guard_lib  # pylint: disable=wrong-import-position
from genjax.train import loop, parallel  # pylint: disable=wrong-import-position

VARIANTS = ("none", "every_step", "guard", "metrics")


def compile_epoch(setup, state, dev, variant: str):
  read_every_step = guard_lib.is_optimizer_group
  if variant == "every_step":  # No group counts as an optimizer state: all read each step.
    guard_lib.is_optimizer_group = lambda name: False
  try:
    check = {"none": None, "metrics": "metrics"}.get(variant, "parameters")
    epoch = parallel.make_epoch(setup.task, setup.mesh, "jit", setup.config.batch_size,
                                guard=check)
    return epoch.lower(state, *dev).compile()
  finally:
    guard_lib.is_optimizer_group = read_every_step


def main(dtype: str = "float32", steps: int = 300, rounds: int = 10,
         prng_impl: str = "threefry2x32") -> None:
  config = config_lib.override(mlp_gan.get_config("mnist"), {"compute_dtype": dtype,
                                                             "prng_impl": prng_impl})
  ds = data_lib.load("mnist", "train")
  n = steps * config.batch_size
  setup = loop.build(config, ds.images[:n])
  dev = parallel.to_device_dataset(ds.images[:n], ds.labels[:n], setup.mesh)
  init = lambda: parallel.put_replicated(setup.init(jax.random.PRNGKey(0)), setup.mesh)
  epochs = {v: compile_epoch(setup, init(), dev, v) for v in VARIANTS}
  states = {v: jax.block_until_ready(epochs[v](init(), *dev)[0]) for v in VARIANTS}
  times = {v: [] for v in VARIANTS}
  for _ in range(rounds):
    for v in VARIANTS:
      t = time.perf_counter()
      states[v], metrics = epochs[v](states[v], *dev)
      jax.block_until_ready((states[v], metrics))
      times[v].append(time.perf_counter() - t)
  base = statistics.median(times["none"])
  for v in VARIANTS:
    med = statistics.median(times[v])
    print(f"{dtype} {prng_impl} {v:10s} median {steps / med:6.1f} steps/s "
          f"({base / med:.3f} of none); every round {[round(steps / t, 1) for t in times[v]]}",
          flush=True)


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "float32",
       *(int(a) for a in sys.argv[2:4]), *sys.argv[4:5])
