"""Notebooks run top to bottom with small settings."""
import os

import nbformat
from nbclient import NotebookClient

from tests.conftest import ROOT


def test_quickstart_runs(tmp_path, monkeypatch):
  monkeypatch.setenv("GENJAX_QUICKSTART_EPOCHS", "2")
  monkeypatch.setenv("GENJAX_QUICKSTART_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  nb = nbformat.read(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}).execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.outputs)
  assert f"steps trained: {2 * (1438 // 64)}" in outputs
  assert any("image/png" in o.get("data", {}) for o in nb.cells[-1].outputs)
  assert (tmp_path / "run" / "samples" / "epoch_0002.png").exists()
