"""Test negative log-likelihood of a trained VAE or PixelCNN work directory.

  python experiments/nll.py --workdir=runs/vae_mlp            # IWAE bound, k=config.iw_samples
  python experiments/nll.py --workdir=runs/pixelcnn           # exact
  python experiments/nll.py --workdir=runs/vae_mlp --iw_samples=100 --num_test=1000

The test split is binarised once with a fixed key (dynamic binarisation, seed --seed). Prints
the NLL in nats per image and in bits/dim, and writes them as JSON to --out if given. For a
VAE the number is an upper bound on the true NLL (-L_k); for a PixelCNN it is exact.
"""
import json
import time

import jax
import numpy as np
from absl import app, flags, logging

from genjax import data as data_lib
from genjax.config import override, validate
from genjax.eval import likelihood as lik
from genjax.train.loop import load_trained

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained 'vae' or 'pixelcnn' work dir.")
_IW = flags.DEFINE_integer("iw_samples", 0, "k of the IW bound (0: config.iw_samples).")
_NUM_TEST = flags.DEFINE_integer("num_test", 0, "First N test images (0: all 10000).")
_CHUNK = flags.DEFINE_integer("iw_chunk", 0, "z samples per image drawn at once (0: the run's "
                              "config.iw_chunk); must divide k. Memory grows with "
                              "batch_size x iw_chunk decoder passes.")
_BATCH = flags.DEFINE_integer("batch_size", 100, "Test images per jitted batch.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the test binarisation and of z.")
_OUT = flags.DEFINE_string("out", "", "Optional JSON output path.")
flags.mark_flags_as_required(["workdir"])


def test_nll(workdir: str, *, iw_samples: int = 0, num_test: int = 0, batch_size: int = 100,
             seed: int = 0, iw_chunk: int = 0) -> dict:
  """{'nll_nats', 'bits_per_dim', 'sem_nats', ...} on the test split of the run's dataset."""
  config, _, state = load_trained(workdir)
  k = iw_samples or config.iw_samples
  config = override(config, {"iw_samples": k, "iw_chunk": iw_chunk or config.iw_chunk})
  validate(config)  # e.g. a chunk that does not divide k, named
  fn = lik.get_log_likelihood_fn(config, iw_samples=k)
  test = data_lib.load(config.dataset, "test", data_dir=config.data_dir or None,
                       source=config.data_source)
  images = test.images[:num_test] if num_test else test.images
  start = time.time()
  ll = lik.evaluate_dataset(fn, state, images, jax.random.PRNGKey(seed), batch_size)
  nll = float(-np.mean(ll))
  num_dims = int(np.prod(images.shape[1:]))
  return {"workdir": workdir, "step": int(jax.device_get(state.step)),  # the checkpoint's
          "model": config.model, "dataset": config.dataset,
          "num_test": int(len(images)), "iw_samples": k if config.family == "vae" else None,
          "iw_chunk": config.iw_chunk if config.family == "vae" else None,
          "nll_nats": nll, "sem_nats": float(np.std(ll) / np.sqrt(len(ll))),
          "bits_per_dim": float(lik.nats_to_bits_per_dim(nll, num_dims)),
          "seconds": round(time.time() - start, 1)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  result = test_nll(_WORKDIR.value, iw_samples=_IW.value, num_test=_NUM_TEST.value,
                    batch_size=_BATCH.value, seed=_SEED.value, iw_chunk=_CHUNK.value)
  print(json.dumps(result, indent=2))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
