"""Gated convolutional VAE on dynamically binarised MNIST: the VAE of Tomczak & Welling
(2018, "VAE with a VampPrior") and van den Berg et al. (2018, "Sylvester normalizing flows"),
whose standard-prior baseline reports 82.1 nats (IW, k = 5000) after training to convergence.
Five 5x5 gated convs (32, 32, 64, 64, 64; strides 1, 2, 1, 2, 1) and a gated Dense to 256,
z64, the decoder mirrored with gated transposed convs, Bernoulli; Adam(1e-3) halving every
60,000 steps (their Adamax 5e-4, KL warm-up and early stopping are not used).

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
