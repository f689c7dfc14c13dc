"""The README's main job end to end, and resume: E epochs straight equal E/2, stop, a new
process, restore, E/2 more -- bit for bit, on every leaf."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_python

CONFIG = "--config=experiments/configs/mlp_gan.py:smoke"


def _train(workdir, epochs):
  return run_python(["experiments/train.py", CONFIG, f"--config.epochs={epochs}",
                     "--config.tensorboard=True", f"--workdir={workdir}"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  straight = tmp_path_factory.mktemp("straight")
  resumed = tmp_path_factory.mktemp("resumed")
  _train(straight, 4)
  _train(resumed, 2)   # Stop after 2 epochs...
  _train(resumed, 4)   # ...and a new process resumes from the checkpoint.
  return straight, resumed


def test_resume_is_bit_identical(runs):
  straight, resumed = runs
  code = ("import sys, json, jax, numpy as np\n"
          "from genjax.train.loop import load_trained\n"
          "a = jax.device_get(load_trained(sys.argv[1])[2])\n"
          "b = jax.device_get(load_trained(sys.argv[2])[2])\n"
          "la, lb = jax.tree.leaves(a), jax.tree.leaves(b)\n"
          "print(json.dumps({'n': len(la), 'step': int(a.step), 'equal': [bool(np.array_equal("
          "x, y)) for x, y in zip(la, lb)], 'same_tree': jax.tree.structure(a) == "
          "jax.tree.structure(b)}))\n")
  out = json.loads(run_python(["-c", code, str(straight), str(resumed)]).stdout.splitlines()[-1])
  assert out["same_tree"] and out["n"] > 20  # params, both Adam states, step, key
  assert out["step"] == 4 * (1438 // 64)
  assert all(out["equal"]), out


def test_main_job_outputs(runs):
  straight, resumed = runs
  for workdir in (straight, resumed):
    records = [json.loads(l) for l in open(workdir / "metrics.jsonl")]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]  # Resume continues the log.
    assert {"d_loss", "g_loss", "d_real", "d_fake", "step"} <= set(records[0])
  grid = Image.open(straight / "samples" / "epoch_0004.png")
  assert grid.size[0] > 100 and np.asarray(grid).std() > 0
  assert Image.open(straight / "loss_curve.png").size[0] > 100
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(straight / "tb"))
  assert (straight / "checkpoints" / str(4 * (1438 // 64))).is_dir()  # Named by step.


def test_sample_export(runs, tmp_path):
  straight, _ = runs
  out = tmp_path / "samples.npz"
  run_python(["experiments/sample.py", f"--workdir={straight}", "--num=130", f"--out={out}"])
  with np.load(out) as f:
    assert set(f.files) == {"images"}
    images = f["images"]
  assert images.shape == (130, 28, 28, 1) and images.dtype == np.uint8
  assert images.std() > 0


def test_sample_export_from_a_non_workdir_is_a_clear_error(tmp_path):
  proc = run_python(["experiments/sample.py", f"--workdir={tmp_path}", "--num=4",
                     f"--out={tmp_path / 'x.npz'}"], check=False)
  assert proc.returncode != 0 and "is not a genjax work directory" in proc.stderr


def test_logged_epochs_tells_a_finished_run_from_a_stopped_one(tmp_path, runs):
  from genjax.train.loop import logged_epochs  # pylint: disable=import-outside-toplevel
  assert logged_epochs(str(runs[0])) == 4   # train.py then prints "Done."
  assert logged_epochs(str(tmp_path)) == 0  # no log yet
  (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')  # cut by a kill
  assert logged_epochs(str(tmp_path)) == 2  # < config.epochs: "Stopped early ..."


def test_train_classifier_refuses_a_used_folder_before_training(tmp_path):
  used = tmp_path / "digits_classifier"
  used.mkdir()
  (used / "earlier").write_text("")  # e.g. a classifier of the same step: saving it failed
  proc = run_python(["experiments/train_classifier.py", "--dataset=digits", "--epochs=1",
                     "--max_train=64", f"--workdir={used}"], check=False)
  assert proc.returncode != 0 and "is not empty" in proc.stderr
  assert "classifier epoch 1/1" not in proc.stdout  # ...only after the whole training.
