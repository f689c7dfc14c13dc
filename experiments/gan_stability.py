"""Issue 5, Must show 4b: how often does the reference GAN's discriminator win its first epoch?

For each variant (a set of `experiments/configs/mlp_gan.py` options: `plain` is the tutorial's
setup; e.g. `ls`, `r1`, `ttur`, `ada`, `ls+r1` add genjax's stabilisers) and each of
--seeds seeds, trains --epochs epochs on the dataset and records:
  * D wins: the mean D loss over the last --tail_frac of epoch 1's steps is below
    --win_threshold (D separates real from fake almost perfectly, so G's BCE signal is
    saturated -- the tutorial's failure mode);
  * min D loss: the smallest 50-step running mean of the D loss in epoch 1;
  * FID and class coverage of --fid_samples samples after the last epoch, in the in-project
    classifier's features against the test split (genjax.eval).
The variant `torch_tutorial` is the same count for the PyTorch tutorial itself (resident
data, its own seeds; needs torch), the reference for "the tutorial's setup does this in about
a third of runs".

  GENJAX_DATA_DIR=... python experiments/gan_stability.py --seeds=10 \
      --variants=plain,torch_tutorial,ls,r1,ttur,ada --out=runs/gan_stability.json
"""
import datetime
import importlib
import json
import time

import jax
from absl import app, flags, logging

from genjax import data as data_lib
from genjax.bench import environment
from genjax.eval import classifier as classifier_lib
from genjax.eval import coverage, metrics
from genjax.eval.stability import run_record, summary, to_markdown
from genjax.eval.pictures import to_uint8
from genjax.metric_writers import make_parent_dir
from genjax.train import loop, parallel
from experiments.configs import mlp_gan

_DATASET = flags.DEFINE_string("dataset", "mnist", "mnist | fashion_mnist | kmnist.")
_SEEDS = flags.DEFINE_integer("seeds", 10, "Seeds per variant (0..seeds-1).")
_VARIANTS = flags.DEFINE_list("variants", ["plain", "ls", "r1", "ttur", "ada"],
                              "'plain', '+'-joined mlp_gan.py options (e.g. ls+r1), or "
                              "'torch_tutorial' (the PyTorch tutorial; needs torch).")
_EPOCHS = flags.DEFINE_integer("epochs", 1, "Epochs per run (D wins is judged on epoch 1).")
_THRESHOLD = flags.DEFINE_float("win_threshold", 0.01, "D loss below this: D wins.")
_TAIL = flags.DEFINE_float("tail_frac", 0.1, "Share of epoch 1's last steps averaged.")
_FID_SAMPLES = flags.DEFINE_integer("fid_samples", 5000, "Samples per FID (0: no FID).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 1, "torch_tutorial's intra-op threads "
                                      "(0: torch's default; 1 holds up best on a shared CPU).")
_OUT = flags.DEFINE_string("out", "", "JSON output path.")


def variant_config(variant: str, dataset: str):
  options = [dataset] + ([] if variant == "plain" else variant.split("+"))
  return mlp_gan.get_config(",".join(options))


def quality(task, state, clf_params, real_features, num: int, seed: int) -> dict:
  """FID and class coverage of the seed's samples; NaN for both when the seed diverged to
  non-finite samples (a diverged seed is a finding of the study, not the end of the run)."""
  try:
    images = to_uint8(jax.device_get(task.sample(state, jax.random.PRNGKey(10_000 + seed),
                                                 num)))
  except FloatingPointError as e:
    logging.warning("Scoring seed %d as NaN: %s", seed, e)
    return {"fid": float("nan"), "class_coverage": float("nan")}
  feats, probs = classifier_lib.features_and_probs(clf_params, images)
  return {"fid": metrics.fid(real_features, feats),
          "class_coverage": coverage.class_coverage(probs)}


def run_variant(variant: str, train, clf_params, real_features) -> list[dict]:
  config = variant_config(variant, _DATASET.value)
  setup = loop.build(config, train.images[:1])
  images, labels = parallel.to_device_dataset(train.images, train.labels, setup.mesh)
  epoch = parallel.make_epoch(setup.task, setup.mesh, config.parallel, config.batch_size)
  runs = []
  for seed in range(_SEEDS.value):
    t = time.time()
    state = parallel.put_replicated(setup.init(jax.random.PRNGKey(seed)), setup.mesh)
    state, m = epoch(state, images, labels)
    row = run_record(variant, seed, jax.device_get(m["d_loss"]), _THRESHOLD.value,
                     _TAIL.value)
    for _ in range(_EPOCHS.value - 1):
      state, _ = epoch(state, images, labels)
    if _FID_SAMPLES.value:
      row.update(quality(setup.task, state, clf_params, real_features, _FID_SAMPLES.value,
                         seed))
    row["seconds"] = time.time() - t
    print(json.dumps(row), flush=True)
    runs.append(row)
  return runs


def run_torch(train) -> list[dict]:
  from experiments.benchmarks import torch_tutorial  # pylint: disable=import-outside-toplevel
  epoch = torch_tutorial.with_threads(torch_tutorial.time_resident_epoch, _TORCH_THREADS.value)
  runs = []
  for seed in range(_SEEDS.value):
    # BCELoss sums the real and fake terms, as genjax's d_loss does.
    row = run_record("torch_tutorial", seed, epoch(train.images, seed=seed)["d_loss"],
                     _THRESHOLD.value, _TAIL.value)
    print(json.dumps(row), flush=True)
    runs.append(row)
  return runs


def check_flags() -> None:
  """One clear error for a bad flag before any training: every variant's config is built
  (unknown options named), torch is imported if asked for, counts are checked, and the
  folder of --out is made."""
  if _SEEDS.value < 1 or _EPOCHS.value < 1 or _FID_SAMPLES.value < 0:
    raise app.UsageError(f"--seeds={_SEEDS.value} and --epochs={_EPOCHS.value} must be >= 1 "
                         f"and --fid_samples={_FID_SAMPLES.value} >= 0.")
  if not 0.0 < _TAIL.value <= 1.0:
    raise app.UsageError(f"--tail_frac={_TAIL.value} must be in (0, 1].")
  for variant in _VARIANTS.value:
    if variant == "torch_tutorial":
      importlib.import_module("experiments.benchmarks.torch_tutorial")  # Needs torch.
    else:
      try:
        variant_config(variant, _DATASET.value)
      except ValueError as e:
        raise app.UsageError(f"--variants: {variant!r}: {e}") from e
  if _OUT.value:
    make_parent_dir(_OUT.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  check_flags()
  env = environment()
  train = data_lib.load(_DATASET.value, "train")
  clf_params, real_features = None, None
  if _FID_SAMPLES.value:
    clf_params = classifier_lib.load(_DATASET.value).params  # Fails early if missing.
    real_features, _ = classifier_lib.features_and_probs(
        clf_params, data_lib.load(_DATASET.value, "test").images)
  runs = []
  for variant in _VARIANTS.value:
    runs += (run_torch(train) if variant == "torch_tutorial"
             else run_variant(variant, train, clf_params, real_features))
    if _OUT.value:  # After each variant, so that a run stopped later keeps what it did.
      with open(_OUT.value, "w") as f:
        json.dump({"date": datetime.date.today().isoformat(), "env": env,
                   "flags": {"dataset": _DATASET.value, "epochs": _EPOCHS.value,
                             "win_threshold": _THRESHOLD.value, "tail_frac": _TAIL.value,
                             "fid_samples": _FID_SAMPLES.value},
                   "summary": summary(runs), "runs": runs}, f, indent=1)
  print(to_markdown(summary(runs)))


if __name__ == "__main__":
  app.run(main)
