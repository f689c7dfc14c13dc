"""Test negative log-likelihood of a trained VAE or PixelCNN work directory.

  python experiments/nll.py --workdir=runs/vae_mlp            # IWAE bound, k=config.iw_samples
  python experiments/nll.py --workdir=runs/pixelcnn           # exact
  python experiments/nll.py --workdir=runs/vae_mlp --iw_samples=100 --num_test=1000
  # one evaluation split over several runs, then merged:
  python experiments/nll.py --workdir=runs/vae_conv --num_test=500 --per_image --out=a.json
  python experiments/nll.py --workdir=runs/vae_conv --start=500 --num_test=500 --per_image \
    --out=b.json
  python experiments/nll.py --merge=a.json,b.json
  # a VAE with the Gaussian-mixture or flow prior that experiments/fit_prior.py fitted in its place:
  python experiments/nll.py --workdir=runs/vae_conv --latent_prior=runs/vae_conv/latent_prior.npz

The test split is binarised once with a fixed key (dynamic binarisation, seed --seed). Prints
the NLL in nats per image and in bits/dim, and writes them as JSON to --out if given. For a
VAE the number is an upper bound on the true NLL (-L_k); for a PixelCNN it is exact. A VAE
with a continuous decoder (config.likelihood='gaussian') is refused: its density of [0, 1]
intensities is no likelihood of the 8-bit data.
`--start` (a multiple of --batch_size) evaluates test images from there with the
binarisation and z draws a whole-split evaluation gives them, so parts written with
`--per_image` merge (`--merge`) into the number one long run would give.
"""
import datetime
import time

import jax
import numpy as np
from absl import app, flags, logging

from genjax import data as data_lib
from genjax import metric_writers
from genjax.bench import environment
from genjax.config import override, validate
from genjax.eval import likelihood as lik
from genjax.train import ema as ema_lib
from genjax.train.loop import load_trained

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained 'vae' or 'pixelcnn' work dir.")
_IW = flags.DEFINE_integer("iw_samples", 0, "k of the IW bound (0: config.iw_samples).")
_NUM_TEST = flags.DEFINE_integer("num_test", 0, "N test images from --start (0: all the rest).")
_START = flags.DEFINE_integer("start", 0, "First test image; a multiple of --batch_size.")
_PER_IMAGE = flags.DEFINE_bool("per_image", False, "Also write each image's log p(x) to --out.")
_MERGE = flags.DEFINE_list("merge", [], "Merge the --per_image JSONs of disjoint parts of one "
                           "evaluation (no --workdir needed).")
_CHUNK = flags.DEFINE_integer("iw_chunk", 0, "z samples per image drawn at once (0: the run's "
                              "config.iw_chunk); must divide k. Memory grows with "
                              "batch_size x iw_chunk decoder passes.")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Test images per jitted batch.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the test binarisation and of z.")
_OUT = flags.DEFINE_string("out", "", "Optional JSON output path.")
_PRIOR = flags.DEFINE_string("latent_prior", "", "A VAE's p(z): a mixture or flow .npz from "
                             "experiments/fit_prior.py for this checkpoint (default N(0, I)).")
_EMA = flags.DEFINE_bool("ema", True, "Score the parameters' moving average where the run "
                         "keeps one (config.ema_decay > 0); --noema: the last parameters.")


def test_nll(workdir: str, *, iw_samples: int = 0, num_test: int = 0, batch_size: int = 100,
             seed: int = 0, iw_chunk: int = 0, start: int = 0, per_image: bool = False,
             ema: bool = True, latent_prior: str = "") -> dict:
  """{'nll_nats', 'bits_per_dim', 'sem_nats', ...} on the test split of the run's dataset."""
  if start < 0 or start % batch_size:
    raise ValueError(f"--start={start} must be a non-negative multiple of --batch_size="
                     f"{batch_size}, so that its batches get the keys of a whole-split run.")
  config, _, state = load_trained(workdir)
  lik.check_discrete_likelihood(config)
  state = ema_lib.choose(state, ema)
  k = iw_samples or config.iw_samples
  config = override(config, {"iw_samples": k, "iw_chunk": iw_chunk or config.iw_chunk})
  validate(config)  # e.g. a chunk that does not divide k, named
  fn, prior_name = lik.trained_log_likelihood_fn(config, state, iw_samples=k,
                                                 latent_prior=latent_prior)
  test = data_lib.load(config.dataset, "test", data_dir=config.data_dir or None,
                       source=config.data_source)
  images = test.images[start:start + num_test] if num_test else test.images[start:]
  if not len(images):
    raise ValueError(f"--start={start} is past the {len(test.images)} test images.")
  began = time.time()
  ll = lik.evaluate_dataset(fn, state, images, jax.random.PRNGKey(seed), batch_size,
                            first_batch=start // batch_size)
  num_dims = int(np.prod(images.shape[1:]))
  result = {"workdir": workdir, "step": int(jax.device_get(state.step)),  # the checkpoint's
            "model": config.model, "family": config.family, "dataset": config.dataset,
            "start": start,
            "num_test": int(len(images)), "iw_samples": k if config.family == "vae" else None,
            "iw_chunk": config.iw_chunk if config.family == "vae" else None,
            "seed": seed, "batch_size": batch_size, "num_dims": num_dims,
            "params": ema_lib.params_name(state.opt),
            "latent_prior": prior_name,
            **lik.nll_summary(ll, num_dims), "seconds": round(time.time() - began, 1)}
  if per_image:
    result["log_likelihoods"] = [float(v) for v in ll]
  return result


def merged(paths: list[str]) -> dict:
  """The --per_image JSONs at `paths` merged into one result."""
  return {**lik.merge_parts(lik.read_parts(paths)), "parts": paths}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  if _OUT.value:  # Made now: a missing folder failed the write after the evaluation.
    metric_writers.make_parent_dir(_OUT.value)
  if _MERGE.value and _WORKDIR.value:
    raise app.UsageError("Give --workdir (evaluate a run) or --merge (merge parts), not both.")
  if _MERGE.value:
    result = merged(_MERGE.value)
  elif _WORKDIR.value:
    result = test_nll(_WORKDIR.value, iw_samples=_IW.value, num_test=_NUM_TEST.value,
                      batch_size=_BATCH.value, seed=_SEED.value, iw_chunk=_CHUNK.value,
                      start=_START.value, per_image=_PER_IMAGE.value, ema=_EMA.value,
                      latent_prior=_PRIOR.value)
    result.update(date=datetime.date.today().isoformat(), env=environment())
  else:
    raise app.UsageError("Give --workdir (evaluate a run) or --merge (merge parts).")
  metric_writers.report(result, _OUT.value, hidden=("log_likelihoods",))


if __name__ == "__main__":
  app.run(main)
