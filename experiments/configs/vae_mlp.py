"""MLP VAE on dynamically binarised MNIST: 784-512-512-z50, Bernoulli decoder, Adam(1e-3).

Options after the colon, comma-separated: `smoke` (tiny run for tests), `gaussian`
(Gaussian decoder on [0,1] intensities), `digits` / `fashion_mnist` (dataset; default mnist),
`exclude=<c>` (train without class c, for one-class anomaly detection).
  --config=experiments/configs/vae_mlp.py
"""
from genjax.config import base_config
from genjax.train.likelihood_presets import apply_options


def get_config(arg: str = ""):
  c = base_config()
  c.family, c.model = "vae", "vae_mlp"
  c.model_args = {"hidden": (512, 512)}
  c.latent_dim = 50
  c.dataset = "mnist"
  c.batch_size = 100
  c.lr = 1e-3
  c.epochs = 300            # The literature's budget; CPU runs override --config.epochs.
  c.checkpoint_every = 10
  c.sample_every = 5
  return apply_options(c, arg, "vae_mlp", smoke_model_args={"hidden": (32,)})
