"""Generative augmentation (issue 5, Must show 5): the class-balanced subset, the real /
generated mix, the gain summary, and experiments/gan_augmentation.py end to end on the
embedded `digits` dataset (always present, so nothing here needs GENJAX_DATA_DIR)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from genjax import config as config_lib
from genjax import data as data_lib
from genjax.eval import augmentation as aug
from genjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_balanced_subset_takes_the_first_n_over_10_of_each_class_deterministically():
  train = data_lib.load("digits", "train")
  idx = data_lib.balanced_indices(train.labels, 50)
  assert np.array_equal(idx, data_lib.balanced_indices(train.labels, 50))
  assert np.array_equal(np.bincount(train.labels[idx], minlength=10), np.full(10, 5))
  assert np.all(np.diff(idx) > 0)  # Split order, no repeats.
  for c in range(10):  # The first 5 of class c, none skipped.
    assert np.array_equal(idx[train.labels[idx] == c], np.flatnonzero(train.labels == c)[:5])
  sub = data_lib.balanced_subset(train, 50)
  assert np.array_equal(sub.images, train.images[idx])


def test_num_train_config_key_cuts_the_loops_training_split():
  c = config_lib.override(config_lib.base_config(), {"dataset": "digits", "num_train": 30})
  split = loop.load_train_split(c)
  assert split.images.shape == (30, 28, 28, 1)
  assert np.array_equal(np.bincount(split.labels, minlength=10), np.full(10, 3))
  assert len(loop.load_train_split(config_lib.base_config()).labels) > 1000  # 0: all.


@pytest.mark.parametrize("num, match", [(25, "multiple of the 10 classes"),
                                        (0, "multiple of the 10 classes"),
                                        (5000, "has only 13[0-9] of class")])
def test_bad_num_train_raises_one_clear_error(num, match):
  with pytest.raises(ValueError, match=match):
    data_lib.balanced_indices(data_lib.load("digits", "train").labels, num)


def test_negative_num_train_is_refused_by_validate():
  with pytest.raises(ValueError, match="num_train must be >= 0"):
    config_lib.validate(config_lib.override(config_lib.base_config(), {"num_train": -10}))


def test_mix_keeps_each_image_with_its_label_and_reaches_the_real_fraction():
  # Each image's pixels encode its label (real: 10 + label, generated: 100 + label).
  real_y = np.arange(20, dtype=np.int32) % 10
  fake_y = np.arange(400, dtype=np.int32) % 10
  real_x = np.broadcast_to((10 + real_y)[:, None, None, None], (20, 28, 28, 1)).astype(np.uint8)
  fake_x = np.broadcast_to((100 + fake_y)[:, None, None, None], (400, 28, 28, 1)
                           ).astype(np.uint8)
  images, labels = aug.mix(real_x, real_y, fake_x, fake_y, real_fraction=0.5)
  assert aug.real_repeats(20, 400, 0.5) == 20
  assert images.shape == (800, 28, 28, 1) and labels.dtype == np.int32
  assert np.array_equal(images[:, 0, 0, 0] % 10, labels)
  is_real = images[:, 0, 0, 0] < 100
  assert is_real.mean() == 0.5
  assert np.array_equal(np.bincount(labels[~is_real]), np.full(10, 40))
  assert aug.real_repeats(100, 10000, 0.01) == 1  # Never fewer than one copy.
  with pytest.raises(ValueError, match="real_fraction must lie in"):
    aug.mix(real_x, real_y, fake_x, fake_y, real_fraction=1.0)
  with pytest.raises(ValueError, match="differ in number"):
    aug.mix(real_x, real_y[:5], fake_x, fake_y, real_fraction=0.5)


def test_gain_is_paired_by_seed():
  row = aug.gain_row(100, [0.70, 0.80, 0.75], [0.72, 0.79, 0.80])
  assert row["gain"][0] == pytest.approx(0.02)
  assert row["gain"][1] == pytest.approx(np.std([0.02, -0.01, 0.05], ddof=1))
  assert row["real"][0] == pytest.approx(0.75)
  assert "| 100 | 3 | 75.00 ± 5.00 | 77.00 ± 4.36 | +2.00 ± 3.00 |" in aug.markdown_table([row])


def test_script_runs_end_to_end_at_tiny_size(tmp_path):
  out = tmp_path / "aug.json"
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "gan_augmentation.py"),
         "--dataset=digits", "--num_labels=20", "--num_fake=20", "--seeds=2",
         "--cgan_width=8", "--cgan_steps=2", "--cgan_batch=10", "--clf_steps=2",
         "--clf_batch=16", f"--workdir={tmp_path}", f"--out={out}"]
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(out.read_text())
  (row,) = result["rows"]
  assert row["num_real"] == 20 and len(row["augmented_per_seed"]) == 2
  assert all(0.0 <= a <= 1.0 for a in row["real_per_seed"] + row["augmented_per_seed"])
  assert row["real_repeats"] == 1 and row["cgan_steps"] == 2
  assert os.path.exists(row["cgan_grid"])
  saved = json.loads((tmp_path / "cgan_n20" / "config.json").read_text())
  assert saved["num_train"] == 20 and saved["model"] == "cgan"
  assert "| 20 | 2 |" in proc.stdout

