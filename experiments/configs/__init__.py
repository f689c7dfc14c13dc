"""Experiment configs as code, one module per model. `get_config(arg)` is what
`--config=experiments/configs/<model>.py:<arg>` reads (ml_collections' config_flags);
`load` builds the same config for scripts that set up many runs (quality table, small-data
runs), so that none of them repeats the import-and-patch."""
import importlib
from typing import Any, Mapping

import ml_collections

from genjax import config as config_lib

MODELS = ("mlp_gan", "dcgan", "cgan", "vae_mlp", "vae_conv", "vae_gated", "pixelcnn",
          "gated_pixelcnn")


def load(model: str, arg: str = "", *, width: int = 0,
         overrides: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """`experiments/configs/<model>.py:<arg>` with `overrides` set (dotted keys, checked as by
  `genjax.config.override`). `width` > 0 sets a conv model's `model_args.width`; the MLP
  GAN, which has none, keeps the tutorial's sizes."""
  if model not in MODELS:
    raise ValueError(f"Unknown experiment config {model!r}; known: {', '.join(MODELS)}.")
  config = importlib.import_module(f"{__name__}.{model}").get_config(arg)
  values = dict(overrides or {})
  if width and "width" in config.model_args:
    values["model_args.width"] = width
  return config_lib.override(config, values)
