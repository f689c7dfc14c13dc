"""Named option sets shared by the likelihood-model configs (vae_*, pixelcnn, gated_pixelcnn).

`apply_options(config, 'smoke,exclude=0', 'vae_mlp', smoke_model_args={...})` sets the
dataset, the held-out class, the decoder likelihood and the tiny `smoke` sizes; an unknown
option raises one error naming it. `pixelcnn_config(model, model_args)` is the training
protocol that `pixelcnn.py` and `gated_pixelcnn.py` share.
"""
from __future__ import annotations

import ml_collections

from genjax.config import base_config, one_option

DATASETS = ("digits", "fashion_mnist")


def apply_options(c: ml_collections.ConfigDict, arg: str, name: str, *,
                  smoke_model_args: dict, allow_gaussian: bool = True
                  ) -> ml_collections.ConfigDict:
  options = {o for o in (arg or "").split(",") if o}
  dataset = one_option(options, DATASETS, "dataset")
  if dataset:
    c.dataset = dataset
  if allow_gaussian and "gaussian" in options:
    c.likelihood = "gaussian"
  excludes = [o for o in options if o.startswith("exclude=")]
  exclude = one_option(options, excludes, "exclude=<c>")
  if exclude:
    c.exclude_label = held_out_class(exclude)
    options.difference_update(excludes)
  if "smoke" in options:  # Seconds on CPU, no data files needed.
    c.dataset = "digits" if c.dataset == "mnist" else c.dataset
    c.epochs, c.checkpoint_every, c.sample_every, c.num_grid = 2, 1, 1, 4
    c.batch_size, c.iw_samples, c.iw_chunk = 32, 10, 5
    c.progress_bar = False
    c.model_args = smoke_model_args
  known = {"smoke", *DATASETS} | ({"gaussian"} if allow_gaussian else set())
  unknown = options - known
  if unknown:
    raise ValueError(f"Unknown {name} config options {sorted(unknown)}.")
  return c


def held_out_class(option: str) -> int:
  """The class c of an `exclude=<c>` option; one error naming the option if c is no integer."""
  try:
    return int(option.split("=", 1)[1])
  except ValueError:
    raise ValueError(f"Option {option!r}: exclude=<c> needs an integer class c.") from None


def pixelcnn_config(model: str, model_args: dict) -> ml_collections.ConfigDict:
  """The autoregressive models' training protocol, one for both networks so that their
  numbers compare: dynamically binarised MNIST, batch 64, Adam(1e-3), 50 epochs, a
  checkpoint and a 16-sample grid every 5 (sampling is 784 network passes: keep it small)."""
  c = base_config()
  c.family, c.model, c.model_args = "pixelcnn", model, model_args
  c.dataset = "mnist"
  c.batch_size = 64
  c.lr = 1e-3
  c.epochs = 50
  c.checkpoint_every = 5
  c.sample_every = 5
  c.num_grid = 16
  return c
