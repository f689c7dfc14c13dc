"""Shared test helpers: small configs, subprocess runs with fake devices, the data dir."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_SESSION_CACHE: list[str] = []
# The tests' programs are tiny, so compiling them takes longer than running them: XLA:CPU
# compiles without LLVM's costly optimisations (the same operations, the same semantics; only
# the generated code is slower). A caller's own XLA_FLAGS are kept and come last, so they win.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                      "--xla_llvm_disable_expensive_passes=true")
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def pytest_configure(config):
  """Fast-compiling XLA flags, and one persistent XLA compilation cache for the session,
  in-process and in every child process (they inherit the environment): the many tiny runs of
  the same configs compile once. A fresh folder per session, so no test ever sees another
  session's programs; a cache the caller set already is used as it is."""
  del config
  flags = os.environ.get("XLA_FLAGS", "").split()  # pytest-xdist's workers have them already
  os.environ["XLA_FLAGS"] = " ".join([f for f in FAST_COMPILE_FLAGS if f not in flags] + flags)
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  _SESSION_CACHE.append(tempfile.mkdtemp(prefix="genjax_test_jax_cache_"))
  os.environ.update(JAX_COMPILATION_CACHE_DIR=_SESSION_CACHE[0],
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def pytest_unconfigure(config):
  del config
  for path in _SESSION_CACHE:
    shutil.rmtree(path, ignore_errors=True)


def xla_flags(devices: int) -> str:
  """The session's XLA flags with `devices` fake CPU devices, for a child process."""
  kept = [f for f in os.environ.get("XLA_FLAGS", "").split()
          if not f.startswith(_DEVICE_COUNT_FLAG)]
  return " ".join((*kept, f"{_DEVICE_COUNT_FLAG}={devices}"))


def run_python(code_or_args, *, devices: int = 1, timeout: int = 600, env: dict | None = None,
               check: bool = True) -> subprocess.CompletedProcess:
  """Runs Python in a fresh process (a script's args list, or code as a string) with
  `devices` fake CPU devices; returns the completed process."""
  full_env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
              "XLA_FLAGS": xla_flags(devices),
              "JAX_PLATFORMS": "cpu", **(env or {})}
  args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
  proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True,
                        text=True, timeout=timeout)
  if check and proc.returncode != 0:
    raise AssertionError(f"subprocess failed ({proc.returncode}):\nSTDOUT:\n{proc.stdout[-3000:]}"
                         f"\nSTDERR:\n{proc.stderr[-5000:]}")
  return proc


def real_data_dir() -> str:
  """$GENJAX_DATA_DIR, or skip the test with a message saying how to enable it."""
  path = os.environ.get("GENJAX_DATA_DIR", "")
  if not path or not os.path.isdir(os.path.join(path, "mnist")):
    pytest.skip("needs the real MNIST IDX files: set GENJAX_DATA_DIR to a folder holding "
                "mnist/ (e.g. ../shared/data); CI sets it.")
  return path


@pytest.fixture
def smoke_config():
  """The reference GAN's :smoke config on digits."""
  from genjax import config as config_lib

  return config_lib.override(config_lib.base_config(), {
      "epochs": 2, "checkpoint_every": 1, "sample_every": 1, "num_grid": 16,
      "progress_bar": False, "tensorboard": False})
