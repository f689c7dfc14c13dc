"""Fit a latent prior (Gaussian mixture or RealNVP flow) to a trained VAE's aggregate posterior.

  python experiments/fit_prior.py --workdir=runs/vae_conv              # K chosen from 5..50
  python experiments/fit_prior.py --workdir=runs/vae_conv --components=20
  python experiments/fit_prior.py --workdir=runs/vae_conv --family=flow --out=.../flow.npz
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

--family=flow trains a RealNVP flow (`genjax.models.flow_prior`) instead, on q(z|x) of all
but the held-out images (--flow_encodings binarisations of each, a fresh z every step), and
scores it on the held-out images' z above, the mixture's held-out score on the same draws.
"""
import json
import os
import sys

import jax
import numpy as np
from absl import app, flags, logging

from genjax.data import to_float
from genjax.eval.pictures import save_grid, to_uint8
from genjax.metric_writers import make_parent_dir
from genjax.models import flow_prior as flow_lib
from genjax.models import latent_prior as prior_lib
from genjax.train import ema as ema_lib
from genjax.train import vae as vae_lib
from genjax.train.loop import load_train_split, load_trained

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained 'vae' work dir.", required=True)
_FAMILY = flags.DEFINE_enum("family", "mixture", ["mixture", "flow"],
                            "The prior: a Gaussian mixture (EM) or a RealNVP flow.")
_COMPONENTS = flags.DEFINE_list("components", ["5", "10", "20", "50"],
                                "Mixture: candidate numbers of components (one: no choice).")
_HELDOUT = flags.DEFINE_integer("heldout", 10000, "Training images held out to choose K "
                                "(mixture) or to score the flow (0: none).")
_REG = flags.DEFINE_float("reg_covar", 1e-4, "Mixture: added to every covariance's diagonal.")
_LAYERS = flags.DEFINE_integer("flow_layers", 8, "Flow: coupling layers.")
_HIDDEN = flags.DEFINE_integer("flow_hidden", 512, "Flow: width of each coupling's MLP.")
_STEPS = flags.DEFINE_integer("flow_steps", 15000, "Flow: Adam steps of 512 samples.")
_RATE = flags.DEFINE_float("flow_learning_rate", 1e-3, "Flow: peak (cosine-decayed) rate.")
_ENCODINGS = flags.DEFINE_integer("flow_encodings", 3, "Flow: binarisations of each image "
                                  "whose q(z|x) it is trained on.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the binarisation, z draws, order and fit.")
_EMA = flags.DEFINE_bool("ema", True, "Fit to the moving average's encoder where the run "
                         "keeps one; --noema: the last parameters'.")
_OUT = flags.DEFINE_string("out", "", "Output .npz (default <workdir>/latent_prior.npz).")
_BATCH = 1000
_FLOW_KEY_TAG = 0x464C


def _in_batches(fn, images: np.ndarray, key: jax.Array):
  """fn(images in [-1,1], key) over uint8 `images` in batches of _BATCH, outputs as float64
  numpy arrays concatenated along the first axis."""
  parts = [jax.device_get(fn(to_float(images[i:i + _BATCH]), jax.random.fold_in(key, i)))
           for i in range(0, len(images), _BATCH)]
  return jax.tree.map(lambda *a: np.concatenate(a).astype(np.float64), *parts)


def aggregate_posterior_samples(config, state, images: np.ndarray, key: jax.Array
                                ) -> np.ndarray:
  """One z ~ q(z | x) per image, x from uint8 `images` [N,28,28,1]: [N, L] float64."""
  params = ema_lib.sampling_params(state.params, state.opt)
  sampler = jax.jit(vae_lib.make_posterior_sampler(config))
  return _in_batches(lambda x, k: sampler(params, x, k), images, key)


def fit_mixture(z: np.ndarray):
  """(mixture, choice): K chosen from --components on the held-out z, or the one given."""
  candidates = [int(k) for k in _COMPONENTS.value]
  settings = {"candidates": candidates, "reg_covar": _REG.value}
  if len(candidates) == 1:
    prior = prior_lib.fit(z, candidates[0], seed=_SEED.value, reg_covar=_REG.value)
    return prior, {**settings, "heldout": 0, "components": candidates[0]}
  prior, choice = prior_lib.select_and_fit(z, candidates, heldout=_HELDOUT.value,
                                           seed=_SEED.value, reg_covar=_REG.value)
  return prior, {**settings, "heldout": _HELDOUT.value, **choice}


def fit_flow(config, state, images: np.ndarray, z: np.ndarray, key: jax.Array):
  """(flow, choice): a flow trained on q(z|x)'s means and deviations of all but the held-out
  images (--flow_encodings binarisations of each) and scored on the held-out ones' z."""
  params = ema_lib.sampling_params(state.params, state.opt)
  posterior = jax.jit(vae_lib.make_posterior(config))
  heldout = _HELDOUT.value
  if not 0 <= heldout < len(images):
    raise app.UsageError(f"--heldout={heldout} must leave some of the {len(images)} training "
                         "images to fit the flow.")
  fit_images = images[:-heldout] if heldout else images
  encodings = [_in_batches(lambda x, k: posterior(params, x, k), fit_images,
                           jax.random.fold_in(key, _FLOW_KEY_TAG + r))
               for r in range(_ENCODINGS.value)]
  settings = {"heldout": heldout, "layers": _LAYERS.value, "hidden": _HIDDEN.value,
              "steps": _STEPS.value, "learning_rate": _RATE.value,
              "encodings": _ENCODINGS.value}
  prior = flow_lib.fit(
      np.stack([m for m, _ in encodings]), np.stack([s for _, s in encodings]),
      layers=_LAYERS.value, hidden=_HIDDEN.value, steps=_STEPS.value,
      learning_rate=_RATE.value, seed=_SEED.value,
      log_fn=lambda i, loss: print(f"step {i}: -log r(z) {loss:.3f}", file=sys.stderr,
                                   flush=True))
  if heldout:
    settings["heldout_log_prob"] = {
        "flow": prior_lib.mean_log_prob(prior, z[-heldout:]),
        "standard_normal": prior_lib.mean_log_prob(None, z[-heldout:])}
  return prior, settings


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  workdir = _WORKDIR.value
  out = _OUT.value or os.path.join(workdir, "latent_prior.npz")
  # Made now: a missing folder failed the save after the fit (a flow's: 15,000 steps).
  make_parent_dir(out)
  config, _, state = load_trained(workdir)
  if config.family != "vae":
    raise app.UsageError(f"{workdir} holds a {config.family!r} model; a latent prior needs "
                         "a VAE.")
  state = ema_lib.choose(state, _EMA.value)
  key = jax.random.PRNGKey(_SEED.value)
  images = load_train_split(config).images
  order = np.random.default_rng(_SEED.value).permutation(len(images))
  z = aggregate_posterior_samples(config, state, images[order], key)
  if _FAMILY.value == "flow":
    prior, choice = fit_flow(config, state, images[order], z, key)
  else:
    prior, choice = fit_mixture(z)
  meta = {"workdir": workdir, **vae_lib.prior_owner(state), "dataset": config.dataset,
          "family": _FAMILY.value, "description": prior_lib.describe(prior),
          "num_samples": int(len(z)), "seed": _SEED.value, **choice,
          "train_log_prob": prior_lib.mean_log_prob(prior, z)}
  prior_lib.save(out, prior, **meta)
  grid_key = jax.random.fold_in(key, 0x5A4D)
  for suffix, p in (("", prior), ("_standard_normal", None)):
    images = jax.jit(vae_lib.make_prior_sampler(config, p), static_argnums=2)(
        state, grid_key, 64)
    save_grid(to_uint8(jax.device_get(images)), f"{os.path.splitext(out)[0]}_samples{suffix}.png")
  print(json.dumps({"out": out, **meta}, indent=2))


if __name__ == "__main__":
  app.run(main)
