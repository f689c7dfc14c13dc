"""Gated PixelCNN (van den Oord et al. 2016, "Conditional image generation with PixelCNN
decoders") on dynamically binarised MNIST: vertical and horizontal stacks with no blind spot,
a 7-wide first layer and 3-wide ones after it, 64 channels, the 1x1 head of 256, Bernoulli
output per pixel, Adam(1e-3). `num_layers` sets the depth (each layer reaches one more row
up and one more column each way).

Options as in pixelcnn.py: `smoke`, `digits` / `fashion_mnist`, `exclude=<c>`.
  --config=experiments/configs/gated_pixelcnn.py
"""
from genjax.train.likelihood_presets import apply_options, pixelcnn_config


def get_config(arg: str = ""):
  c = pixelcnn_config("gated_pixelcnn", {"features": 64, "num_layers": 8, "head_features": 256})
  smoke = {"features": 8, "num_layers": 2, "head_features": 16}
  return apply_options(c, arg, "gated_pixelcnn", smoke_model_args=smoke, allow_gaussian=False)
