"""PixelCNN on dynamically binarised MNIST: 7x7 type-A conv, 6 gated residual blocks of
64 channels, 1x1 head of 256, Bernoulli output per pixel, Adam(1e-3).

Options as in vae_mlp.py: `smoke`, `digits` / `fashion_mnist`, `exclude=<c>`.
  --config=experiments/configs/pixelcnn.py
"""
from genjax.train.likelihood_presets import apply_options, pixelcnn_config


def get_config(arg: str = ""):
  c = pixelcnn_config("pixelcnn", {"features": 64, "num_blocks": 6, "head_features": 256})
  smoke = {"features": 8, "num_blocks": 1, "head_features": 16}
  return apply_options(c, arg, "pixelcnn", smoke_model_args=smoke, allow_gaussian=False)
