"""Triggers each bad input genjax guards against and prints the error it gets, as a markdown
table for experiments/RESULTS.md (generated, so it cannot drift from the code).

  PYTHONPATH=. python experiments/bad_inputs.py
"""
from __future__ import annotations

import gzip
import os
import sys
import tempfile

import jax
import ml_collections
import numpy as np
from absl import logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments", "configs"))

import mlp_gan  # pylint: disable=wrong-import-position

from genjax import checkpoint as ck  # pylint: disable=wrong-import-position
from genjax import config as config_lib  # pylint: disable=wrong-import-position
from genjax import data  # pylint: disable=wrong-import-position
from genjax.data import idx  # pylint: disable=wrong-import-position
from genjax.eval import classifier, pictures  # pylint: disable=wrong-import-position
from genjax.train import loop  # pylint: disable=wrong-import-position

TMP = tempfile.mkdtemp(prefix="genjax_bad_inputs_")


def smoke(**values):
  return config_lib.override(mlp_gan.get_config("smoke"), values)


def digits(**replace):
  d = data.load("digits", "train")
  return d._replace(**replace)


def train_with(dataset=None, config=None, name="run"):
  loop.train(config or smoke(), os.path.join(TMP, name), quiet=True, dataset=dataset)


def saved_gan(name: str, latent_dim: int, damage: bool = False,
              steps_per_epoch: int | None = None) -> str:
  """A work directory with one checkpoint of the smoke GAN's initial state."""
  config = smoke(latent_dim=latent_dim)
  setup = loop.build(config, np.zeros((1, 28, 28, 1), np.uint8))
  wd = os.path.join(TMP, name)
  with loop.checkpointer_for(wd, config) as c:
    meta = {"epoch": 1} if steps_per_epoch is None else {"epoch": 1,
                                                          "steps_per_epoch": steps_per_epoch}
    c.save(1, setup.init(jax.random.PRNGKey(0)), meta=meta)
  if damage:
    os.remove(os.path.join(wd, "checkpoints", "1", "meta", "metadata"))
  return wd


def corrupt_gzip_idx() -> str:
  """A data directory whose MNIST test images are a gzip stream with damaged bytes."""
  folder = os.path.join(TMP, "corrupt_data", "mnist")
  os.makedirs(folder, exist_ok=True)
  raw = gzip.compress(idx.encode_idx(np.arange(10 * 28 * 28, dtype=np.uint8).reshape(
      10, 28, 28)))
  raw = raw[:40] + bytes(8) + raw[48:]
  with open(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), "wb") as f:
    f.write(raw)
  with open(os.path.join(folder, "t10k-labels-idx1-ubyte"), "wb") as f:
    f.write(idx.encode_idx(np.zeros(10, np.uint8)))
  return os.path.dirname(folder)


def resumed_under_another_prng():
  """A run checkpointed under threefry2x32, resumed under philox4x32 (same key shape)."""
  train_with(config=smoke(prng_impl="threefry2x32"), name="prng")
  train_with(config=smoke(prng_impl="philox4x32", epochs=2), name="prng")


def restore_into(wd: str, latent_dim: int):
  setup = loop.build(smoke(latent_dim=latent_dim), np.zeros((1, 28, 28, 1), np.uint8))
  with loop.checkpointer_for(wd, smoke()) as c:
    c.restore(setup.abstract_state)


def save_keeping_best_by(metric: str):
  with ck.Checkpointer(os.path.join(TMP, "best"), best_metric=metric) as c:
    c.save(1, {"w": np.zeros(3)}, metrics={"d_loss": 1.0, "g_loss": 1.0})


def base_with(**values):
  return ml_collections.ConfigDict({**config_lib.base_config().to_dict(), **values})


CASES = [
    ("config: unknown key (`--config.epoch=3`)", lambda: smoke(epoch=3)),
    ("config: wrong type (`epochs='3'`)", lambda: smoke(epochs="3")),
    ("config: wrong type in a hand-built dict", lambda: config_lib.validate(base_with(lr_g="x"))),
    ("config: `batch_size=0`", lambda: config_lib.validate(smoke(batch_size=0))),
    ("config: `keep_checkpoints=0`", lambda: config_lib.validate(smoke(keep_checkpoints=0))),
    ("config: `nan_policy='retry'`", lambda: config_lib.validate(smoke(nan_policy="retry"))),
    ("config: `num_grid=0`", lambda: config_lib.validate(smoke(num_grid=0))),
    ("config: `num_train=100` with a class held out", lambda: config_lib.validate(
        smoke(exclude_label=3, num_train=100))),
    ("config: unknown dataset", lambda: config_lib.validate(smoke(dataset="cifar10"))),
    ("config: more devices than present", lambda: loop.build(
        smoke(num_devices=jax.device_count() + 1), np.zeros((1, 28, 28, 1), np.uint8))),
    ("data: float images instead of uint8", lambda: train_with(
        digits(images=data.load("digits", "train").images.astype(np.float32) / 255))),
    ("data: 32x32 images", lambda: train_with(
        digits(images=np.zeros((1438, 32, 32, 1), np.uint8)))),
    ("data: labels out of 0..9", lambda: train_with(
        digits(labels=data.load("digits", "train").labels + 1))),
    ("data: fewer examples than one batch", lambda: train_with(
        digits(images=data.load("digits", "train").images[:10],
               labels=data.load("digits", "train").labels[:10]))),
    ("data: blank (constant) images", lambda: train_with(
        digits(images=np.zeros((1438, 28, 28, 1), np.uint8)))),
    ("data: IDX dataset, data dir missing", lambda: data.load(
        "mnist", "train", data_dir=os.path.join(TMP, "nowhere"), source="idx")),
    ("data: IDX file with corrupt gzip data", lambda: data.load(
        "mnist", "test", data_dir=corrupt_gzip_idx(), source="idx")),
    ("checkpoint: other architecture (latent_dim 100 -> 64)", lambda: restore_into(
        saved_gan("arch", 100), 64)),
    ("checkpoint: every step damaged", lambda: restore_into(
        saved_gan("damaged", 100, damage=True), 100)),
    ("checkpoint: resumed with another batch size (64 -> 128)", lambda: train_with(
        config=smoke(batch_size=128),
        name=os.path.basename(saved_gan("resized", smoke().latent_dim, steps_per_epoch=22)))),
    ("checkpoint: resumed under another PRNG (threefry2x32 -> philox4x32)",
     resumed_under_another_prng),
    ("checkpoint: best kept by a metric the run lacks", lambda: save_keeping_best_by("gloss")),
    ("evaluation: float images given to the feature classifier", lambda:
     classifier.features_and_probs(None, np.zeros((4, 28, 28, 1), np.float32))),
    ("evaluation: a sample grid or FID set of NaN samples", lambda:
     pictures.to_uint8(np.full((4, 28, 28, 1), np.nan, np.float32))),
    ("workdir: not a genjax work directory", lambda: loop.load_trained(TMP)),
]


def main() -> None:
  logging.set_verbosity(logging.ERROR)
  rows = ["| Bad input | Error | Message |", "|---|---|---|"]
  for what, trigger in CASES:
    try:
      trigger()
      error, message = "**none raised**", ""
    except Exception as e:  # pylint: disable=broad-except
      error = type(e).__name__
      message = " ".join(str(e).split()).replace(TMP, "<tmp>").replace("|", "\\|")
      if len(message) > 300:
        message = message[:297] + "..."
    rows.append(f"| {what} | `{error}` | {message} |")
  print("\n".join(rows))


if __name__ == "__main__":
  main()
