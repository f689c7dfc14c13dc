"""Class-conditional DCGAN: label embedding concatenated to z in G, projection D.

Same options as dcgan.py (dataset, loss `ns|minimax|ls|hinge|wgan_gp`, stabilisers
`r1|sn|ttur|ada`, `smoke`). Samples follow requested labels; the loop's grid cycles 0..9.
  --config=experiments/configs/cgan.py:mnist,hinge,sn
"""
from genjax.config import base_config
from genjax.train.gan_presets import apply_options


def get_config(arg: str = ""):
  return apply_options(base_config(), {o for o in (arg or "").split(",") if o}, "cgan")
