"""Configs: one base, locked keys, clear errors for typos and bad values."""
import pytest

from genjax import config as config_lib
from tests.conftest import run_python


def test_override_sets_nested_keys_and_keeps_the_base():
  base = config_lib.base_config()
  c = config_lib.override(base, {"epochs": 3, "model_args.dropout_rate": 0.0, "lr_g": 1})
  assert c.epochs == 3 and c.model_args.dropout_rate == 0.0 and c.lr_g == 1.0
  assert base.epochs == 100  # The base is untouched.


def test_unknown_key_and_wrong_type_name_the_key():
  with pytest.raises(KeyError, match="Unknown config key 'epoch'"):
    config_lib.override(config_lib.base_config(), {"epoch": 3})
  with pytest.raises(TypeError, match="Config key 'batch_size' expects int, got str"):
    config_lib.override(config_lib.base_config(), {"batch_size": "64"})


@pytest.mark.parametrize("key,value,message", [
    ("dataset", "cifar10", "config.dataset='cifar10'"),
    ("parallel", "pmap", "config.parallel='pmap'"),
    ("compute_dtype", "float16", "Unknown compute dtype 'float16'"),
    ("batch_size", 0, "config.batch_size must be >= 1"),
    ("keep_checkpoints", 0, "config.keep_checkpoints must be >= 1"),
    ("num_train", 15, "num_train=15 must be a multiple of the 10 classes"),
    ("num_grid", 0, "config.num_grid must be >= 1"),
])
def test_validate_names_bad_values(key, value, message):
  c = config_lib.base_config()
  c[key] = value
  with pytest.raises((ValueError, KeyError), match=message):
    config_lib.validate(c)


def test_num_train_with_a_class_held_out_is_balanced_over_the_other_nine():
  c = config_lib.override(config_lib.base_config(), {"exclude_label": 0, "num_train": 90})
  config_lib.validate(c)
  c.num_train = 100
  with pytest.raises(ValueError, match="num_train=100 must be a multiple of the 9 classes"):
    config_lib.validate(c)


def test_json_round_trip():
  c = config_lib.override(config_lib.base_config(), {"epochs": 7})
  assert config_lib.from_json(config_lib.to_json(c)).to_dict() == c.to_dict()


def test_cli_rejects_unknown_config_key(tmp_path):
  proc = run_python(["experiments/train.py", "--config=experiments/configs/mlp_gan.py:smoke",
                     "--config.no_such_key=1", f"--workdir={tmp_path}"], check=False)
  assert proc.returncode != 0
  assert "no_such_key" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()  # Nothing ran.


def test_xla_options_parse_as_jit_compiler_options():
  c = config_lib.override(config_lib.base_config(), {"xla_options": (
      "--xla_gpu_command_buffer_scheduling_mode=CONCURRENT xla_gpu_autotune_level=0 "
      "xla_gpu_enable_triton_gemm=False xla_gpu_autotune_gemm_rtol=0.01")})
  assert config_lib.compiler_options(c) == {
      "xla_gpu_command_buffer_scheduling_mode": "CONCURRENT", "xla_gpu_autotune_level": 0,
      "xla_gpu_enable_triton_gemm": False, "xla_gpu_autotune_gemm_rtol": 0.01}
  assert config_lib.compiler_options(config_lib.base_config()) == {}
  for bad in ("CONCURRENT", "xla_gpu_autotune_level=", "autotune_level=0"):
    c.xla_options = bad
    with pytest.raises(ValueError, match=f"config.xla_options='{bad}'.*'xla_<option>=<value>'"):
      config_lib.validate(c)
