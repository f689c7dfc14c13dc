"""PixelCNN on dynamically binarised MNIST: 7x7 type-A conv, 6 gated residual blocks of
64 channels, 1x1 head of 256, Bernoulli output per pixel, Adam(1e-3).

Options as in vae_mlp.py: `smoke`, `digits` / `fashion_mnist`, `exclude=<c>`.
  --config=experiments/configs/pixelcnn.py
"""
from genjax.config import base_config


def get_config(arg: str = ""):
  c = base_config()
  c.family, c.model = "pixelcnn", "pixelcnn"
  c.model_args = {"features": 64, "num_blocks": 6, "head_features": 256}
  c.dataset = "mnist"
  c.batch_size = 64
  c.lr = 1e-3
  c.epochs = 50
  c.checkpoint_every = 5
  c.sample_every = 5
  c.num_grid = 16           # Sampling is 784 network passes: keep the per-epoch grid small.
  options = {o for o in (arg or "").split(",") if o}
  for name in ("digits", "fashion_mnist"):
    if name in options:
      c.dataset = name
  for opt in [o for o in options if o.startswith("exclude=")]:
    c.exclude_label = int(opt.split("=", 1)[1])
    options.discard(opt)
  if "smoke" in options:  # Seconds on CPU, no data files needed.
    c.dataset = "digits" if c.dataset == "mnist" else c.dataset
    c.epochs, c.checkpoint_every, c.sample_every, c.num_grid = 2, 1, 1, 4
    c.batch_size, c.iw_samples, c.iw_chunk = 32, 10, 5
    c.progress_bar = False
    c.model_args = {"features": 8, "num_blocks": 1, "head_features": 16}
  unknown = options - {"smoke", "digits", "fashion_mnist"}
  if unknown:
    raise ValueError(f"Unknown pixelcnn config options {sorted(unknown)}.")
  return c
