"""Fit a Gaussian-mixture latent prior to a trained VAE's aggregate posterior.

  python experiments/fit_prior.py --workdir=runs/vae_conv              # K chosen from 5..50
  python experiments/fit_prior.py --workdir=runs/vae_conv --components=20
  python experiments/nll.py --workdir=runs/vae_conv --latent_prior=runs/vae_conv/latent_prior.npz
  python experiments/evaluate.py --workdir=runs/vae_conv \
      --latent_prior=runs/vae_conv/latent_prior.npz

The samples: one z ~ q(z|x) per image of the run's training split (binarised once with
--seed), in a seeded random order. Each candidate K is fitted (EM, full covariances) to all
but the last --heldout of them and scored by their mean log-density; the best K is refitted
on all and written to --out (default <workdir>/latent_prior.npz) with the checkpoint step,
a fingerprint of the parameters and the scores, beside a grid of samples from it
(`..._samples.png`) and one from N(0, I) (`..._samples_standard_normal.png`). The encoder
and decoder are not changed: the mixture replaces N(0, I) as p(z) (`genjax.models.latent_prior`).
"""
import json
import os

import jax
import numpy as np
from absl import app, flags, logging

from genjax.data import to_float
from genjax.eval.pictures import save_grid, to_uint8
from genjax.models import latent_prior as prior_lib
from genjax.train import ema as ema_lib
from genjax.train import vae as vae_lib
from genjax.train.loop import load_train_split, load_trained

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained 'vae' work dir.", required=True)
_COMPONENTS = flags.DEFINE_list("components", ["5", "10", "20", "50"],
                                "Candidate numbers of mixture components (one: no choice).")
_HELDOUT = flags.DEFINE_integer("heldout", 10000, "Training images held out to choose K.")
_REG = flags.DEFINE_float("reg_covar", 1e-4, "Added to every covariance's diagonal.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the binarisation, z draws, order and EM.")
_EMA = flags.DEFINE_bool("ema", True, "Fit to the moving average's encoder where the run "
                         "keeps one; --noema: the last parameters'.")
_OUT = flags.DEFINE_string("out", "", "Output .npz (default <workdir>/latent_prior.npz).")
_BATCH = 1000


def aggregate_posterior_samples(config, state, images: np.ndarray, key: jax.Array
                                ) -> np.ndarray:
  """One z ~ q(z | x) per image, x from uint8 `images` [N,28,28,1]: [N, L] float64."""
  posterior_sample = jax.jit(vae_lib.make_posterior_sampler(config))
  params = ema_lib.sampling_params(state.params, state.opt)
  return np.concatenate([
      np.asarray(posterior_sample(params, to_float(images[i:i + _BATCH]),
                                  jax.random.fold_in(key, i)), np.float64)
      for i in range(0, len(images), _BATCH)])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  workdir = _WORKDIR.value
  config, _, state = load_trained(workdir)
  if config.family != "vae":
    raise app.UsageError(f"{workdir} holds a {config.family!r} model; a latent prior needs "
                         "a VAE.")
  state = ema_lib.choose(state, _EMA.value)
  key = jax.random.PRNGKey(_SEED.value)
  images = load_train_split(config).images
  order = np.random.default_rng(_SEED.value).permutation(len(images))
  z = aggregate_posterior_samples(config, state, images[order], key)
  candidates = [int(k) for k in _COMPONENTS.value]
  if len(candidates) == 1:
    prior = prior_lib.fit(z, candidates[0], seed=_SEED.value, reg_covar=_REG.value)
    choice = {"components": candidates[0]}
  else:
    prior, choice = prior_lib.select_and_fit(z, candidates, heldout=_HELDOUT.value,
                                             seed=_SEED.value, reg_covar=_REG.value)
  meta = {"workdir": workdir, **vae_lib.prior_owner(state), "dataset": config.dataset,
          "num_samples": int(len(z)), "candidates": candidates,
          "heldout": _HELDOUT.value if len(candidates) > 1 else 0, "seed": _SEED.value,
          "reg_covar": _REG.value, **choice,
          "train_log_prob": prior_lib.mean_log_prob(prior, z)}
  out = _OUT.value or os.path.join(workdir, "latent_prior.npz")
  prior_lib.save(out, prior, **meta)
  grid_key = jax.random.fold_in(key, 0x5A4D)
  for suffix, p in (("", prior), ("_standard_normal", None)):
    images = jax.jit(vae_lib.make_prior_sampler(config, p), static_argnums=2)(
        state, grid_key, 64)
    save_grid(to_uint8(jax.device_get(images)), f"{os.path.splitext(out)[0]}_samples{suffix}.png")
  print(json.dumps({"out": out, **meta}, indent=2))


if __name__ == "__main__":
  app.run(main)
