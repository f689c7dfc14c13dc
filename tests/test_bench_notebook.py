"""notebooks/benchmark.ipynb runs top to bottom on CPU with tiny settings."""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import xla_flags

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "benchmark.ipynb")


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
  # Under runs/ (ignored by git), not loose in the checkout's root.
  assert not (tmp_path / "bench_notebook.json").exists()
  with open(tmp_path / "runs" / "bench_notebook.json") as f:
    doc = json.load(f)
  assert doc["config"] == settings["GENJAX_BENCH_CONFIG"]
  impls = [r["impl"] for r in doc["rows"]]
  genjax_row = doc["rows"][0]
  assert impls[0] == "genjax" and genjax_row["steps"] == 2 and not genjax_row["full_epoch"]
  assert (genjax_row["model"], genjax_row["dtype"], genjax_row["batch_size"]) == (
      "mlp_gan", "float32", 16)
  report = "".join(o.get("data", {}).get("text/markdown", "") for o in nb.cells[-1].outputs)
  assert "| genjax | mlp_gan | float32 | 16 |" in report
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    assert impls == ["genjax", "torch_resident_1thr"]
    assert doc["rows"][1]["batch_size"] == 16 and doc["rows"][1]["steps"] == 2
    assert "x_torch_resident_1thr" in genjax_row
    # Where the baselines ran, as experiments/bench.py records it (no CUDA torch here).
    assert doc["environment"]["torch_device"] == "cpu"
  except ImportError:
    assert impls == ["genjax"] and doc["environment"]["torch_device"] is None


def _first_code_cell() -> str:
  nb = nbformat.read(NOTEBOOK, as_version=4)
  return next(c.source for c in nb.cells if c.cell_type == "code")


def _run_first_cell(cwd, source="") -> subprocess.CompletedProcess:
  """The notebook's first cell (it finds, or clones, the checkout) in a fresh Python."""
  code = _first_code_cell() + "\nprint('ROOT=' + os.getcwd())\n"
  env = {k: v for k, v in os.environ.items() if k != "GENJAX_SOURCE"}
  if source:
    env["GENJAX_SOURCE"] = source
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=120, check=False)


def _fake_checkout(path):
  (path / "genjax").mkdir(parents=True)
  (path / "genjax" / "__init__.py").write_text("")
  (path / "experiments").mkdir()
  (path / "experiments" / "__init__.py").write_text("")  # git keeps no empty folder
  return path


def _installed() -> bool:
  try:
    importlib.metadata.version("genjax")
  except importlib.metadata.PackageNotFoundError:
    return False
  return True


def test_first_cell_finds_a_clone_in_the_working_directory(tmp_path):
  # Colab: `!git clone <url>` in /content without a %cd leaves the checkout in ./genjax;
  # the folder holding that clone is no checkout (its genjax/ has no genjax package).
  clone = _fake_checkout(tmp_path / "genjax")
  proc = _run_first_cell(tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert f"ROOT={clone}" in proc.stdout


def test_first_cell_without_a_checkout_says_how_to_get_one(tmp_path):
  # A fresh runtime (the notebook opened alone): one clear error, not a silent chdir to '/'.
  proc = _run_first_cell(tmp_path)
  assert proc.returncode != 0
  assert "RuntimeError" in proc.stderr and "GENJAX_SOURCE" in proc.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.skipif(not _installed(), reason="genjax not installed: the cell would pip-install")
def test_first_cell_clones_genjax_source(tmp_path):
  repo = _fake_checkout(tmp_path / "repo")
  git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
  for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "fake"]):
    subprocess.run(git + args, check=True, capture_output=True)
  work = tmp_path / "content"
  work.mkdir()
  proc = _run_first_cell(work, source=f"git+file://{repo}")
  assert proc.returncode == 0, proc.stderr
  assert f"ROOT={work / 'genjax'}" in proc.stdout
  assert (work / "genjax" / "genjax" / "__init__.py").exists()
  # A checkout's path is used where it is.
  proc = _run_first_cell(work / "genjax" / "experiments", source=str(repo))
  assert proc.returncode == 0 and f"ROOT={work / 'genjax'}" in proc.stdout  # found above cwd
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  proc = _run_first_cell(elsewhere, source=str(repo))
  assert proc.returncode == 0 and f"ROOT={repo}" in proc.stdout
