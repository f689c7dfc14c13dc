"""Evaluate generated samples: FID, KID, precision / recall, class coverage, classifier score.

  python experiments/evaluate.py --samples FILE.npz --dataset mnist [--split test]
  python experiments/evaluate.py --workdir W [--num 10000]   # sample W's model, then evaluate
      # (its moving average where the run keeps one; --noema: its last parameters, written
      # to eval_samples_last.npz / eval_last.json; a VAE with --latent_prior=FILE: z from
      # that fitted prior, to eval_samples_latent_prior.npz / eval_latent_prior.json)
  python experiments/evaluate.py --baseline train --dataset mnist  # reference numbers:
      # the first --num train images ('train') or uniform noise ('noise') as the "samples"
Prints the numbers and writes `eval.json` (next to the samples file, or in W; --out
overrides). The feature classifier comes from `experiments/train_classifier.py`.
"""
import json
import os

import numpy as np
from absl import app, flags, logging

from genjax import config as config_lib
from genjax.data import DATASETS, IMAGE_SHAPE, SPLITS, load
from genjax.eval import evaluate
from genjax.metric_writers import make_parent_dir

_SAMPLES = flags.DEFINE_string("samples", None, ".npz with images uint8 [N,28,28,1].")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained work directory to sample from.")
_DATASET = flags.DEFINE_enum("dataset", None, list(DATASETS),
                             "Real dataset (default with --workdir: the model's).")
_SPLIT = flags.DEFINE_enum("split", "test", list(SPLITS), "Real split to compare with.")
_NUM = flags.DEFINE_integer("num", 10000, "Samples to draw with --workdir.")
_BASELINE = flags.DEFINE_enum("baseline", None, ["train", "noise"],
                              "Evaluate a reference instead of samples: the first --num "
                              "train images, or --num images of uniform noise.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling and KID-subset seed.")
_EMA = flags.DEFINE_bool("ema", True, "With --workdir: sample the parameters' moving average "
                         "where the run keeps one (config.ema_decay > 0); --noema: the last "
                         "parameters.")
_PRIOR = flags.DEFINE_string("latent_prior", "", "With --workdir of a VAE: draw z from this "
                             "fitted prior (experiments/fit_prior.py) instead of N(0, I); files "
                             "get the suffix _latent_prior.")
_OUT = flags.DEFINE_string("out", None, "Where to write the JSON (default: eval.json beside "
                           "the samples / in the workdir).")
_CLASSIFIER_DIR = flags.DEFINE_string("classifier_dir", None, "Feature classifier directory "
                                      "(default: the cache of train_classifier.py).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder (default $GENJAX_DATA_DIR).")
_MAX_REAL = flags.DEFINE_integer("max_real", 0, "Use only this many real images (0: all).")
_KID_SUBSETS = flags.DEFINE_integer("kid_subsets", 100, "KID subsets.")


def _baseline(dataset: str, kind: str, num: int) -> np.ndarray:
  if kind == "noise":
    rng = np.random.default_rng(_SEED.value)
    return rng.integers(0, 256, size=(num,) + IMAGE_SHAPE, dtype=np.uint8)
  return load(dataset, "train", data_dir=_DATA_DIR.value).images[:num]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if sum(map(bool, (_SAMPLES.value, _WORKDIR.value, _BASELINE.value))) != 1:
    raise app.UsageError("Give exactly one of --samples FILE.npz, --workdir W or --baseline.")
  if _PRIOR.value and not _WORKDIR.value:
    raise app.UsageError("--latent_prior samples a VAE's work directory: give --workdir.")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO.
  if _WORKDIR.value:
    from genjax.sampling import export_samples  # pylint: disable=import-outside-toplevel

    dataset = _DATASET.value or config_lib.load_workdir_config(_WORKDIR.value).dataset
    # --noema and --latent_prior write beside the default files.
    suffix = ("" if _EMA.value else "_last") + ("_latent_prior" if _PRIOR.value else "")
    samples_path = os.path.join(_WORKDIR.value, f"eval_samples{suffix}.npz")
    images = export_samples(_WORKDIR.value, _NUM.value, samples_path, seed=_SEED.value,
                            ema=_EMA.value, latent_prior=_PRIOR.value)["images"]
    out = _OUT.value or os.path.join(_WORKDIR.value, f"eval{suffix}.json")
  elif _BASELINE.value:
    if not _DATASET.value:
      raise app.UsageError("--baseline needs --dataset.")
    dataset, samples_path = _DATASET.value, f"baseline:{_BASELINE.value}"
    images = _baseline(dataset, _BASELINE.value, _NUM.value)
    out = _OUT.value or f"eval_{dataset}_{_BASELINE.value}.json"
  else:
    if not _DATASET.value:
      raise app.UsageError("--samples needs --dataset (the real data to compare with).")
    dataset, samples_path = _DATASET.value, _SAMPLES.value
    images = evaluate.load_samples(samples_path)
    out = _OUT.value or os.path.join(os.path.dirname(os.path.abspath(samples_path)),
                                     "eval.json")
  result = evaluate.evaluate_against_dataset(
      images, dataset, split=_SPLIT.value, classifier_dir=_CLASSIFIER_DIR.value,
      data_dir=_DATA_DIR.value, max_real=_MAX_REAL.value, kid_subsets=_KID_SUBSETS.value,
      seed=_SEED.value)
  result["samples"] = (samples_path if _BASELINE.value else os.path.abspath(samples_path))
  for key, value in result.items():
    if isinstance(value, float):
      print(f"{key:>26}: {value:.5g}")
  make_parent_dir(out)
  with open(out, "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
  print(f"Wrote {out}")


if __name__ == "__main__":
  app.run(main)
