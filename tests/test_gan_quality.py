"""The quality table's cells (experiments/gan_quality.py): configs, one cell trained and
scored end to end on tiny data, and the table."""
import numpy as np
import pytest

from experiments import gan_quality
from genjax import data as data_lib


def test_cell_config_sets_loss_dataset_budget_and_conv_width():
  c = gan_quality.cell_config("dcgan", "wgan_gp", "mnist", epochs=3, width=16, seed=2)
  assert (c.model, c.loss, c.dataset, c.epochs, c.seed) == ("dcgan", "wasserstein", "mnist", 3, 2)
  assert (c.model_args.width, c.gp_weight, c.n_critic) == (16, 10.0, 5)
  mlp = gan_quality.cell_config("mlp_gan", "ls", "mnist", epochs=1, width=16)
  assert (mlp.model, mlp.loss, mlp.dataset) == ("mlp_gan", "least_squares", "mnist")
  assert "width" not in mlp.model_args  # The MLP GAN keeps the tutorial's sizes.


@pytest.mark.parametrize("model, loss", [("vae_mlp", "ns"), ("dcgan", "softplus")])
def test_unknown_cell_raises_naming_it(model, loss):
  with pytest.raises(ValueError, match=f"Unknown cell {model}/{loss}"):
    gan_quality.cell_config(model, loss, "mnist", epochs=1)


def test_one_cell_trains_and_is_scored_against_real_features():
  train = data_lib.balanced_subset(data_lib.load("digits", "train"), 320)
  config = gan_quality.cell_config("mlp_gan", "hinge", "digits", epochs=2)
  task, state, history = gan_quality.train_cell(config, train)
  assert len(history) == 2 and np.isfinite(history[-1]["d_loss"])
  projection = np.random.default_rng(0).normal(size=(28 * 28, 8))

  def features_fn(images):  # A fixed random projection stands in for the classifier.
    flat = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return flat @ projection, np.full((len(images), 10), 0.1)

  real_features, _ = features_fn(train.images)
  scores = gan_quality.score_cell(task, state, features_fn, real_features, num=64, seed=0)
  row = gan_quality.cell_record("mlp_gan", "hinge", config, len(train.images), history, scores)
  assert row["steps"] == 2 * (320 // 64) and row["num_samples"] == 64
  assert row["fid"] > 0 and 0.0 <= row["coverage"] <= 1.0
  # Real images scored against themselves are far closer than the 10-step GAN's samples.
  assert gan_quality.evaluate.evaluate_features(real_features, real_features[:64])["fid"] < \
      row["fid"]
  table = gan_quality.to_markdown([row])
  assert table.splitlines()[2].startswith("| mlp_gan | hinge | ")


def test_torch_reference_checks_the_classifier_before_training(tmp_path):
  pytest.importorskip("torch")
  from tests.conftest import run_python  # pylint: disable=import-outside-toplevel
  out = tmp_path / "torch_ref"
  proc = run_python(["experiments/gan_torch_reference.py", "--dataset=digits", "--epochs=1",
                     "--torch_threads=1", f"--out_dir={out}"],
                    env={"GENJAX_CACHE_DIR": str(tmp_path / "no_cache")}, check=False)
  assert proc.returncode != 0 and "No digits feature classifier" in proc.stderr
  assert "epoch 1:" not in proc.stdout  # It failed after the whole training before.
  assert not (out / "samples.npz").exists()


def _script(tmp_path, script, *flags):
  from tests.conftest import run_python  # pylint: disable=import-outside-toplevel
  return run_python([f"experiments/{script}", *flags], check=False,
                    env={"GENJAX_CACHE_DIR": str(tmp_path / "no_cache")})  # No classifier.


def test_gan_quality_makes_the_out_folder_before_any_work(tmp_path):
  out = tmp_path / "new" / "quality.json"
  proc = _script(tmp_path, "gan_quality.py", "--dataset=digits", "--models=mlp_gan",
                 "--losses=ns", f"--out={out}")
  assert proc.returncode != 0 and "No digits feature classifier" in proc.stderr
  assert out.parent.is_dir()  # A missing folder failed the write after every cell.


@pytest.mark.parametrize("flag", ["--eval_every=0", "--num=100", "--num_train=20"])
def test_gan_small_data_names_a_bad_count_before_any_work(tmp_path, flag):
  out = tmp_path / "new" / "small.json"
  proc = _script(tmp_path, "gan_small_data.py", "--dataset=digits", "--num_train=100",
                 "--epochs=4", "--eval_every=2", "--num=200", flag, f"--out={out}")
  assert proc.returncode != 0 and flag.split("=")[0] in proc.stderr
  assert "No digits feature classifier" not in proc.stderr  # The check came first.
  proc = _script(tmp_path, "gan_small_data.py", "--dataset=digits", "--num_train=100",
                 "--num=200", f"--out={out}")
  assert "No digits feature classifier" in proc.stderr and out.parent.is_dir()


def test_a_diverged_cell_scores_nan_and_the_table_goes_on():
  from types import SimpleNamespace  # pylint: disable=import-outside-toplevel
  task = SimpleNamespace(sample=lambda state, key, num: np.full((num, 28, 28, 1), np.nan))
  scores = gan_quality.score_cell(task, None, None, None, num=4, seed=0)
  assert set(scores) == set(gan_quality.METRICS) and np.isnan(list(scores.values())).all()
