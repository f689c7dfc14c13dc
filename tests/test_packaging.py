"""pyproject.toml's dependency bounds, as `.ci/lowest` reads them."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _lowest_pins():
  spec = importlib.util.spec_from_file_location("lowest_pins", ROOT / ".ci" / "lowest_pins.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_every_dependency_has_a_lower_bound_to_pin(capsys):
  _lowest_pins().main(["test", "bench"])
  pins = dict(line.split("==") for line in capsys.readouterr().out.split())
  assert pins["jaxlib"] == pins["jax"]  # jax's compiled half pinned beside it
  assert {"jax", "flax", "optax", "orbax-checkpoint", "tensorflow-datasets", "pytest"} <= set(pins)


def test_a_dependency_without_a_lower_bound_is_named():
  with pytest.raises(ValueError, match="'flax<1': every dependency needs one lower bound"):
    _lowest_pins().lower_bounds(["jax>=0.8.2", "flax<1"])
