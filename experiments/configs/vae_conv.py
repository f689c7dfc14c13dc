"""Convolutional VAE on dynamically binarised MNIST: conv 32-64 stride 2 encoder, mirrored
transposed-conv decoder, z50, Bernoulli decoder, Adam(1e-3).

Options as in vae_mlp.py: `smoke`, `gaussian`, `digits` / `fashion_mnist`, `exclude=<c>`.
  --config=experiments/configs/vae_conv.py
"""
from genjax.config import base_config


def get_config(arg: str = ""):
  c = base_config()
  c.family, c.model = "vae", "vae_conv"
  c.model_args = {"channels": (32, 64)}
  c.latent_dim = 50
  c.dataset = "mnist"
  c.batch_size = 100
  c.lr = 1e-3
  c.epochs = 300
  c.checkpoint_every = 10
  c.sample_every = 5
  options = {o for o in (arg or "").split(",") if o}
  for name in ("digits", "fashion_mnist"):
    if name in options:
      c.dataset = name
  if "gaussian" in options:
    c.likelihood = "gaussian"
  for opt in [o for o in options if o.startswith("exclude=")]:
    c.exclude_label = int(opt.split("=", 1)[1])
    options.discard(opt)
  if "smoke" in options:  # Seconds on CPU, no data files needed.
    c.dataset = "digits" if c.dataset == "mnist" else c.dataset
    c.epochs, c.checkpoint_every, c.sample_every, c.num_grid = 2, 1, 1, 4
    c.batch_size, c.iw_samples, c.iw_chunk = 32, 10, 5
    c.progress_bar = False
    c.model_args = {"channels": (8, 16)}
  unknown = options - {"smoke", "digits", "fashion_mnist", "gaussian"}
  if unknown:
    raise ValueError(f"Unknown vae_conv config options {sorted(unknown)}.")
  return c
