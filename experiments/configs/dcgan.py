"""DCGAN (conv G with batch norm, conv D) on 28x28 images, through the one GAN step.

Options after the colon, comma-separated:
  dataset: `mnist` / `fashion_mnist` / `kmnist` (default digits);
  loss: `ns` (non-saturating, default) / `minimax` / `ls` (least squares) / `hinge` /
        `wgan_gp` (Wasserstein, GP weight 10, n_critic 5, Adam(1e-4, b=(0, 0.9)));
  stabilisers: `r1` (gamma 1), `sn` (spectral norm in D), `ttur` (lr_d 4e-4, lr_g 1e-4),
        `ada` (adaptive augmentation, target 0.6);
  `smoke` (tiny run for tests).
  --config=experiments/configs/dcgan.py:mnist,hinge,sn
"""
from genjax.config import base_config
from genjax.train.gan_presets import apply_options


def get_config(arg: str = ""):
  return apply_options(base_config(), {o for o in (arg or "").split(",") if o}, "dcgan")
