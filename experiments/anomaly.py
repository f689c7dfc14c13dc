"""Anomaly detection by likelihood (score = -log p(x), nats), reported as AUROC.

  # MNIST-trained model: MNIST test (normal) vs Fashion-MNIST test (anomalous)
  python experiments/anomaly.py --workdir=runs/vae_mlp --ood=fashion_mnist
  # Model trained without class c (config option exclude=c): held-out class c is anomalous
  python experiments/anomaly.py --workdir=runs/vae_mlp_ex0

The mode follows the run: when its config has exclude_label = c >= 0 the test split of its
dataset is split into class c (anomalous) and the rest (normal); otherwise the test split is
normal and --ood's test split anomalous. VAEs use the IW bound with --iw_samples under the
prior the run trained against (config.latent_prior, else N(0, I)); PixelCNN is exact. Test
images are binarised once with a fixed key.
"""
import datetime

import jax
from absl import app, flags, logging

from genjax import data as data_lib
from genjax import metric_writers
from genjax.bench import environment
from genjax.eval import likelihood as lik
from genjax.eval.anomaly import auroc
from genjax.train.loop import load_trained

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained 'vae' or 'pixelcnn' work dir.")
_OOD = flags.DEFINE_string("ood", "fashion_mnist", "Anomalous dataset (runs without a "
                           "held-out class; an error for one with).")
_IW = flags.DEFINE_integer("iw_samples", 100, "k of the VAE's IW bound.")
_NUM_TEST = flags.DEFINE_integer("num_test", 0, "First N images of each test split (0: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the binarisation and of z.")
_OUT = flags.DEFINE_string("out", "", "Optional JSON output path.")
flags.mark_flags_as_required(["workdir"])


def anomaly_auroc(workdir: str, *, ood: str | None = None, iw_samples: int = 100,
                  num_test: int = 0, seed: int = 0) -> dict:
  """`ood` (default fashion_mnist) is the anomalous dataset of a run without a held-out
  class; given for a run with one, it is an error rather than silently unused."""
  config, _, state = load_trained(workdir)
  if config.exclude_label >= 0 and ood:
    raise ValueError(f"{workdir} was trained without class {config.exclude_label}, which is "
                     f"the anomalous set; --ood={ood} would not be used. Drop --ood.")
  ood = ood or "fashion_mnist"
  fn, prior_name = lik.trained_log_likelihood_fn(config, state, iw_samples=iw_samples)
  load = lambda name: data_lib.load(name, "test", data_dir=config.data_dir or None,
                                    source=config.data_source)
  key = jax.random.PRNGKey(seed)
  cut = (lambda a: a[:num_test]) if num_test else (lambda a: a)
  test = load(config.dataset)
  if config.exclude_label >= 0:
    held = test.labels == config.exclude_label
    normal, anomalous = test.images[~held], test.images[held]
    what = f"{config.dataset} class {config.exclude_label} held out"
  else:
    normal, anomalous = test.images, load(ood).images
    what = f"{config.dataset} vs {ood}"
  normal, anomalous = cut(normal), cut(anomalous)
  score = lambda images, tag: -lik.evaluate_dataset(fn, state, images,
                                                    jax.random.fold_in(key, tag))
  s_normal, s_anomalous = score(normal, 0), score(anomalous, 1)
  return {"workdir": workdir, "model": config.model, "task": what,
          "iw_samples": iw_samples if config.family == "vae" else None, "seed": seed,
          "latent_prior": prior_name,
          "num_normal": int(len(normal)), "num_anomalous": int(len(anomalous)),
          "mean_nll_normal": float(s_normal.mean()),
          "mean_nll_anomalous": float(s_anomalous.mean()),
          "auroc": auroc(s_normal, s_anomalous)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  if _OUT.value:  # Made now: a missing folder failed the write after the evaluation.
    metric_writers.make_parent_dir(_OUT.value)
  result = anomaly_auroc(_WORKDIR.value, ood=_OOD.value if flags.FLAGS["ood"].present else None,
                         iw_samples=_IW.value, num_test=_NUM_TEST.value, seed=_SEED.value)
  metric_writers.report({**result, "date": datetime.date.today().isoformat(),
                         "env": environment()}, _OUT.value)


if __name__ == "__main__":
  app.run(main)
