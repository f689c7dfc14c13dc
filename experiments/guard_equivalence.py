"""Checks that the NaN guard leaves a healthy GAN run's numbers untouched, and that a
'rollback' run with an injected NaN ends where a clean run ends.

  PYTHONPATH=. python experiments/guard_equivalence.py   # prints two booleans
"""
import os
import sys
import tempfile

import jax
import numpy as np
from absl import logging

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs"))
import mlp_gan  # pylint: disable=wrong-import-position

from genjax.config import override  # pylint: disable=wrong-import-position
from genjax.train.loop import train  # pylint: disable=wrong-import-position


def run(**values):
  config = override(mlp_gan.get_config("smoke"),
                    {"epochs": 4, "tensorboard": False, "sample_every": 100, **values})
  return train(config, tempfile.mkdtemp(prefix="genjax_guard_"), quiet=True)


def equal(a, b) -> bool:
  return jax.tree.all(jax.tree.map(np.array_equal, a, b))  # Structures must match too.


def main() -> None:
  logging.set_verbosity(logging.ERROR)
  guarded = run()
  print("guard == no guard:", equal(guarded, run(nan_policy="off")))
  print("rollback after NaN at step 50 == clean:",
        equal(guarded, run(debug_nan_step=50, nan_policy="rollback")))


if __name__ == "__main__":
  main()
