"""Convolutional VAE on dynamically binarised MNIST: conv 32-64 stride 2 encoder, mirrored
transposed-conv decoder, z50, Bernoulli decoder, Adam(1e-3).

Options as in vae_mlp.py: `smoke`, `gaussian`, `digits` / `fashion_mnist`, `exclude=<c>`.
  --config=experiments/configs/vae_conv.py
"""
from genjax.config import base_config
from genjax.train.likelihood_presets import apply_options


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
  return apply_options(c, arg, "vae_conv", smoke_model_args={"channels": (8, 16)})
