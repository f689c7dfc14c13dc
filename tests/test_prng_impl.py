"""config.prng_impl: a run's keys come from the chosen JAX PRNG, resume stays exact under it,
and a checkpoint made under another PRNG is named as such."""
import jax
import numpy as np
import pytest

from experiments import fault_injection as fi
from genjax import checkpoint as ck
from genjax import config as config_lib
from genjax.train import loop


@pytest.fixture(autouse=True)
def restore_default_prng():
  """`loop.build` sets JAX's default PRNG process-wide; later tests get JAX's own back."""
  old = jax.config.jax_default_prng_impl
  yield
  jax.config.update("jax_default_prng_impl", old)


needs_philox = pytest.mark.skipif(
    "philox2x32" not in config_lib.available_prng_impls(),
    reason=f"JAX's Philox PRNGs need jax >= 0.10.2; this is jax {jax.__version__}")


def train(workdir, epochs, prng_impl):
  return loop.train(fi.make_config(0, epochs=epochs, prng_impl=prng_impl), str(workdir),
                    quiet=True, dataset=fi.subset_dataset())


def test_unknown_prng_is_a_clear_error():
  config = config_lib.override(config_lib.base_config(), {"prng_impl": "mt19937"})
  with pytest.raises(ValueError, match="config.prng_impl='mt19937'; use one of"):
    config_lib.validate(config)


def test_a_prng_this_jax_lacks_names_the_jax_it_needs(monkeypatch):
  monkeypatch.setattr(jax, "__version_info__", (0, 10, 1))
  assert config_lib.available_prng_impls() == ("threefry2x32",)
  config = config_lib.override(config_lib.base_config(), {"prng_impl": "philox4x32"})
  with pytest.raises(ValueError, match=r"config.prng_impl='philox4x32' needs jax >= 0.10.2; "
                                       r"this is jax .*Use one of \('threefry2x32',\)"):
    config_lib.validate(config)


@needs_philox
def test_philox_run_resumes_exactly(tmp_path):
  straight = train(tmp_path / "straight", 2, "philox2x32")
  assert straight.key.shape == (1,)  # Philox 2x32's key, not threefry's (2,).
  train(tmp_path / "stopped", 1, "philox2x32")
  resumed = train(tmp_path / "stopped", 2, "philox2x32")
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  threefry = train(tmp_path / "threefry", 2, "threefry2x32")
  assert threefry.key.shape == (2,)
  assert not np.array_equal(np.asarray(threefry.g_params["params"]["Dense_0"]["kernel"]),
                            np.asarray(straight.g_params["params"]["Dense_0"]["kernel"]))


@needs_philox
def test_checkpoint_of_another_prng_is_named(tmp_path):
  train(tmp_path / "run", 1, "threefry2x32")
  with pytest.raises(ck.CheckpointMismatchError, match=r"checkpoint has '\.key \(2,\) uint32', "
                                                    r"model has '\.key \(1,\) uint32'"):
    train(tmp_path / "run", 2, "philox2x32")


@needs_philox
def test_checkpoint_of_a_same_shaped_prng_is_named(tmp_path):
  """threefry2x32 and philox4x32 keys are both uint32[2]: only the meta can tell them apart."""
  train(tmp_path / "run", 1, "threefry2x32")
  config_path = tmp_path / "run" / "config.json"
  saved_config = config_path.read_text()
  with pytest.raises(ValueError, match=r"prng_impl='threefry2x32'; this config has "
                                       r"'philox4x32'"):
    train(tmp_path / "run", 2, "philox4x32")
  assert config_path.read_text() == saved_config  # The run's own config is kept.
