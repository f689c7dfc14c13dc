"""The feature classifier, sample-file checks and the evaluate.py CLI, on `digits` with a
tiny classifier trained once into a temporary directory."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from genjax import data as data_lib
from genjax.checkpoint import Checkpointer
from genjax.eval import classifier, evaluate, metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("clf_digits"))
  clf = classifier.train("digits", directory, epochs=4, batch_size=64, max_train=768,
                         log=lambda _: None)
  return directory, clf


def test_patch_conv_equals_lax_conv():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 28, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (5, 5, 3, 4))  # HWIO
  want = jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = classifier.patches(x, 5, 2) @ w.reshape(-1, 4)  # (i, j, c) order matches HWIO.
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_trained_classifier_learns_and_round_trips(trained):
  directory, clf = trained
  assert clf.meta["dataset"] == "digits" and clf.meta["test_accuracy"] > 0.7
  loaded = classifier.load("digits", directory)
  jax.tree.map(np.testing.assert_array_equal, loaded.params, clf.params)
  test = data_lib.load("digits", "test")
  assert classifier.accuracy(loaded.params, test.images, test.labels) == pytest.approx(
      clf.meta["test_accuracy"])


def test_missing_or_foreign_classifier_is_a_clear_error(trained, tmp_path, monkeypatch):
  directory, _ = trained
  monkeypatch.setenv(classifier.ENV_CACHE_DIR, str(tmp_path))
  assert classifier.default_dir("mnist") == str(tmp_path / "classifiers" / "mnist")
  with pytest.raises(classifier.ClassifierNotFoundError,
                     match="python experiments/train_classifier.py --dataset mnist$"):
    classifier.load("mnist")
  with pytest.raises(classifier.ClassifierMismatchError, match="trained on 'digits', not "
                     "'mnist'.*Move .* aside.*--dataset mnist --workdir"):
    classifier.load("mnist", directory)
  images = np.zeros((200, 28, 28, 1), np.uint8)

  def no_data(*args, **kwargs):
    raise AssertionError(f"data loaded before the classifier: {args}")

  monkeypatch.setattr(evaluate.data_lib, "load", no_data)  # Before any data is loaded.
  with pytest.raises(classifier.ClassifierNotFoundError,
                     match="train_classifier.py --dataset digits"):
    evaluate.evaluate_against_dataset(images, "digits", classifier_dir=str(tmp_path / "no"))


def test_classifier_of_another_architecture_is_a_mismatch_error(tmp_path):
  # Other parameter shapes (e.g. a checkpoint from before an ARCH bump): the restore's layout
  # check raised the checkpointer's RuntimeError, without the command that trains one.
  directory = str(tmp_path / "older_cnn")
  with Checkpointer(directory, max_to_keep=1) as ckpt:
    ckpt.save(1, {"params": {"Dense_0": {"kernel": np.zeros((3, 4), np.float32)}}},
              meta={"dataset": "mnist", "arch": "an-older-cnn"})
    ckpt.wait()
  with pytest.raises(classifier.ClassifierMismatchError,
                     match="not a mnist classifier.*train_classifier.py --dataset mnist"):
    classifier.load("mnist", directory)


def test_features_take_uint8_images_in_any_batch_split():
  params = classifier.init_params(jax.random.PRNGKey(0))
  images = np.random.default_rng(0).integers(0, 256, (23, 28, 28, 1), dtype=np.uint8)
  whole = classifier.features_and_probs(params, images)
  split = classifier.features_and_probs(params, images, batch_size=10)  # 10 + 10 + 3 padded.
  for a, b in zip(whole, split, strict=True):
    assert a.shape == b.shape and a.dtype == np.float32
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Float images in [-1, 1] were mapped by `to_float` a second time (to about -1: blank).
  for bad in (images.astype(np.float32) / 127.5 - 1, images[:0]):
    with pytest.raises(ValueError, match="uint8 images"):
      classifier.features_and_probs(params, bad)


def test_bad_sample_files_are_clear_errors(trained, tmp_path):
  directory, _ = trained
  cases = {
      "floats": ({"images": np.zeros((200, 28, 28, 1), np.float32)}, "dtype float32"),
      "shape": ({"images": np.zeros((200, 28, 28), np.uint8)}, r"shape \(200, 28, 28\)"),
      "rgb": ({"images": np.zeros((200, 32, 32, 3), np.uint8)}, "shape"),
      "key": ({"samples": np.zeros((200, 28, 28, 1), np.uint8)}, "no 'images' array"),
  }
  for name, (arrays, message) in cases.items():
    path = str(tmp_path / f"{name}.npz")
    np.savez(path, **arrays)
    with pytest.raises(evaluate.SampleFileError, match=message):
      evaluate.load_samples(path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    evaluate.load_samples(str(tmp_path / "absent.npz"))
  few = np.zeros((100, 28, 28, 1), np.uint8)
  with pytest.raises(ValueError, match="100 samples but the classifier features have 128"):
    evaluate.evaluate_against_dataset(few, "digits", classifier_dir=directory)


def test_classifier_fid_rises_with_noise(trained):
  _, clf = trained
  real, _ = classifier.features_and_probs(clf.params, data_lib.load("digits", "train").images)
  test = data_lib.load("digits", "test").images
  rng = np.random.default_rng(0)
  fids = []
  for scale in (0, 50, 100, 200):
    noisy = np.clip(test + rng.normal(scale=scale, size=test.shape), 0, 255).astype(np.uint8)
    fids.append(metrics.fid(real, classifier.features_and_probs(clf.params, noisy)[0]))
  assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_evaluate_cli_end_to_end(trained, tmp_path):
  directory, _ = trained
  samples = str(tmp_path / "samples.npz")
  np.savez_compressed(samples, images=data_lib.load("digits", "train").images[:200])
  out = str(tmp_path / "eval.json")
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "evaluate.py"), "--samples", samples,
       "--dataset", "digits", "--classifier_dir", directory, "--kid_subsets", "2",
       "--out", out], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "fid" in proc.stdout
  result = json.load(open(out))
  # Real train digits against real test digits: close in every sense.
  assert result["num_samples"] == 200 and result["num_real"] == 359
  assert 0 <= result["fid"] < 5 and result["precision"] > 0.5 and result["recall"] > 0.5
  assert result["class_coverage"] == 1.0 and result["kl_to_uniform"] < 0.05
  assert 1.0 <= result["classifier_score"] <= 10.0  # Its range for K=10 classes.
