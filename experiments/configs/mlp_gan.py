"""The reference MLP GAN of the PyTorch tutorial: BCE, Adam(2e-4), batch 64.

Options after the colon, comma-separated: `mnist` / `fashion_mnist` / `kmnist` (dataset;
default digits), `smoke` (tiny run for tests), `bf16` (bfloat16 compute), a loss
(`ns` (default) | `minimax` | `ls` | `hinge` | `wgan_gp`) and stabilisers (`r1` | `ttur` |
`ada`; spectral norm is for the conv discriminators), as in genjax.train.gan_presets.
  --config=experiments/configs/mlp_gan.py:mnist
  --config=experiments/configs/mlp_gan.py:mnist,ls,r1
"""
from genjax.config import base_config, one_option
from genjax.train.gan_presets import LOSSES, STABILISERS, apply_loss_options

DATASETS = ("mnist", "fashion_mnist", "kmnist")


def get_config(arg: str = ""):
  options = {o for o in (arg or "").split(",") if o}
  known = set(DATASETS) | set(LOSSES) | (set(STABILISERS) - {"sn"}) | {"bf16", "smoke"}
  if options - known:
    raise ValueError(f"Unknown mlp_gan config options {sorted(options - known)}; known: "
                     f"{sorted(known)}.")
  c = base_config()
  c.model = "mlp_gan"
  c.dataset = "digits"
  c.epochs = 200            # ~4400 steps on digits: about two minutes on 2 CPU cores.
  c.checkpoint_every = 50
  c.sample_every = 10
  dataset = one_option(options, DATASETS, "dataset")
  if dataset:
    c.dataset, c.epochs, c.checkpoint_every, c.sample_every = dataset, 50, 5, 1
  apply_loss_options(c, options)
  if "bf16" in options:
    c.compute_dtype = "bfloat16"
  if "smoke" in options:
    c.epochs, c.checkpoint_every, c.sample_every, c.num_grid = 2, 1, 1, 16
    c.progress_bar = False
  return c
