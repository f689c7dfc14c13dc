"""Named option sets for the GAN configs (experiments/configs/{mlp_gan,dcgan,cgan}.py).

`apply_options(config, {'mnist', 'hinge', 'sn'}, 'dcgan')` sets dataset, loss and
stabilisers of the conv GANs; `apply_loss_options(config, options)` sets only the loss and
stabilisers (the MLP GAN's config uses it). Unknown or conflicting options raise one error
naming them.
"""
from __future__ import annotations

import ml_collections

from genjax.config import one_option

DATASETS = ("mnist", "fashion_mnist", "kmnist")
LOSSES = {"ns": "non_saturating", "minimax": "minimax", "ls": "least_squares",
          "hinge": "hinge", "wgan_gp": "wasserstein"}
STABILISERS = ("r1", "sn", "ttur", "ada")


def apply_loss_options(c: ml_collections.ConfigDict, options: set[str]
                       ) -> ml_collections.ConfigDict:
  """Loss (one of LOSSES' keys) and stabilisers (STABILISERS) named in `options`; other
  options are ignored here (the caller checks them)."""
  loss = one_option(options, LOSSES, "loss")
  if loss:
    c.loss = LOSSES[loss]
  if "wgan_gp" in options:
    c.gp_weight, c.n_critic, c.lr_g, c.lr_d, c.adam_b1, c.adam_b2 = 10.0, 5, 1e-4, 1e-4, 0.0, 0.9
  if "r1" in options:
    c.r1_gamma = 1.0
  if "sn" in options:
    c.spectral_norm = True
  if "ttur" in options:
    c.lr_g, c.lr_d = 1e-4, 4e-4
  if "ada" in options:
    c.ada = True
  return c


def apply_options(c: ml_collections.ConfigDict, options: set[str], model: str
                  ) -> ml_collections.ConfigDict:
  """Shared by dcgan.py and cgan.py: sets dataset, loss and stabilisers from options."""
  unknown = options - set(DATASETS) - set(LOSSES) - set(STABILISERS) - {"smoke"}
  if unknown:
    raise ValueError(f"Unknown {model} config options {sorted(unknown)}; known: "
                     f"{sorted(set(DATASETS) | set(LOSSES) | set(STABILISERS) | {'smoke'})}.")
  dataset = one_option(options, DATASETS, "dataset")
  c.model = model
  c.model_args.dropout_rate = 0.0
  c.model_args.width = 64
  c.adam_b1 = 0.5  # DCGAN's Adam(2e-4, b1=0.5).
  c.epochs, c.checkpoint_every, c.sample_every = 100, 25, 10  # digits: ~2200 steps.
  if dataset:
    c.dataset, c.epochs, c.checkpoint_every, c.sample_every = dataset, 20, 5, 1
  apply_loss_options(c, options)
  if "smoke" in options:
    c.epochs, c.checkpoint_every, c.sample_every, c.num_grid = 2, 1, 1, 16
    c.model_args.width = 8
    c.progress_bar = False
  return c
