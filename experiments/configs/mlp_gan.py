"""The reference MLP GAN of the PyTorch tutorial: BCE, Adam(2e-4), batch 64.

Options after the colon, comma-separated: `mnist` / `fashion_mnist` (dataset; default
digits), `smoke` (tiny run for tests), `bf16` (bfloat16 compute).
  --config=experiments/configs/mlp_gan.py:mnist
"""
from genjax.config import base_config


def get_config(arg: str = ""):
  options = {o for o in (arg or "").split(",") if o}
  c = base_config()
  c.model = "mlp_gan"
  c.dataset = "digits"
  c.epochs = 200            # ~4400 steps on digits: about two minutes on 2 CPU cores.
  c.checkpoint_every = 50
  c.sample_every = 10
  for name in ("mnist", "fashion_mnist", "kmnist"):
    if name in options:
      c.dataset, c.epochs, c.checkpoint_every, c.sample_every = name, 50, 5, 1
  if "bf16" in options:
    c.compute_dtype = "bfloat16"
  if "smoke" in options:
    c.epochs, c.checkpoint_every, c.sample_every, c.num_grid = 2, 1, 1, 16
    c.progress_bar = False
  unknown = options - {"mnist", "fashion_mnist", "kmnist", "bf16", "smoke"}
  if unknown:
    raise ValueError(f"Unknown mlp_gan config options {sorted(unknown)}.")
  return c
