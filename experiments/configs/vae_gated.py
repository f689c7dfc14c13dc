"""Gated convolutional VAE on dynamically binarised MNIST: the factorised-Gaussian baseline
VAE of van den Berg et al. (2018, "Sylvester normalizing flows", code
riannevdberg/sylvester-flows, models/VAE.py), which they report at about 82.1 nats (IW,
k = 5000) on *statically* binarised MNIST after up to 2000 epochs with early stopping.
Five 5x5 gated convs (32, 32, 64, 64, 64; strides 1, 2, 1, 2, 1) and a gated Dense to 256
(their 7x7 'VALID' conv), z64, the decoder mirrored with gated transposed convs and a 1x1
conv, Bernoulli; Adam(1e-3) halving every 60,000 steps (their optimizer was Adamax 5e-4, and
their KL weight rose over 100 epochs: `--config.kl_warmup_steps=60000`; the default trains
without warm-up).

Options as in vae_mlp.py: `smoke`, `gaussian`, `digits` / `fashion_mnist`, `exclude=<c>`.
  --config=experiments/configs/vae_gated.py
"""
from genjax.config import base_config
from genjax.train.likelihood_presets import apply_options


def get_config(arg: str = ""):
  c = base_config()
  c.family, c.model = "vae", "vae_gated"
  c.model_args = {"channels": (32, 64), "hidden": 256}
  c.latent_dim = 64
  c.dataset = "mnist"
  c.batch_size = 100
  c.lr = 1e-3
  c.lr_halflife_steps = 60000
  c.epochs = 300
  c.checkpoint_every = 10
  c.sample_every = 5
  return apply_options(c, arg, "vae_gated",
                       smoke_model_args={"channels": (4, 8), "hidden": 16})
