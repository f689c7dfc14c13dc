"""notebooks/benchmark.ipynb runs top to bottom on CPU with tiny settings."""
import json
import os
import shutil

import pytest

from tests.conftest import xla_flags

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_notebook_runs_tiny(tmp_path, monkeypatch):
  # A copy of the repository's code in tmp_path, so the notebook's output file stays there.
  for item in ("genjax", "experiments", "notebooks"):
    shutil.copytree(os.path.join(ROOT, item), tmp_path / item,
                    ignore=shutil.ignore_patterns("__pycache__"))
  settings = {"GENJAX_BENCH_CONFIG": "experiments/configs/mlp_gan.py:smoke",
              "GENJAX_BENCH_BATCH_SIZES": "16", "GENJAX_BENCH_DTYPES": "float32",
              "GENJAX_BENCH_STEPS": "2", "GENJAX_BENCH_BASELINES": "torch_resident",
              "GENJAX_BENCH_TORCH_THREADS": "1", "JAX_PLATFORMS": "cpu"}
  for k, v in settings.items():
    monkeypatch.setenv(k, v)
  monkeypatch.setenv("XLA_FLAGS", xla_flags(1))
  nb = nbformat.read(str(tmp_path / "notebooks" / "benchmark.ipynb"), as_version=4)
  nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                          resources={"metadata": {"path": str(tmp_path / "notebooks")}}
                          ).execute()
  with open(tmp_path / "bench_notebook.json") as f:
    doc = json.load(f)
  impls = [r["impl"] for r in doc["rows"]]
  assert impls[0] == "genjax" and doc["rows"][0]["steps"] == 2
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    assert impls == ["genjax", "torch_resident_1thr"]
    assert "x_torch_resident_1thr" in doc["rows"][0]
  except ImportError:
    assert impls == ["genjax"]
