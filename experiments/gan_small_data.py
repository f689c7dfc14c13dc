"""Issue 5, Must show 4: on a small training set plain GAN training degrades (D memorises
the few real images, or wins outright and G collapses); ADA and the mode-collapse detector
react. Results: experiments/RESULTS.md, "Small-data run" sections.

Runs, each the same model and seed on the class-balanced first --num_train training images:
  plain  -- no augmentation;
  ada    -- adaptive augmentation from the start (p steered by r_t toward --ada_target);
  react  -- plain until the collapse detector fires or D's train/test sign gap passes
            --react_gap, then the host switches to the ADA step (same state: the ADA
            controller rides in it); forked from the plain run's state at that point.
Every --eval_every epochs: FID / KID / coverage / class coverage of --num samples against the
test split in the in-project classifier's features (as experiments/evaluate.py), D's
overfitting signal (mean sign D on the training images vs as many held-out test images, D
in inference mode, no augmentation), ADA's p, and the collapse detector's normalised entropy /
coverage of the samples' predicted classes. Rows stream as JSON; --out gets all of them and
the markdown table.

  GENJAX_DATA_DIR=... python experiments/gan_small_data.py --dataset=mnist --model=mlp_gan \
      --num_train=500 --epochs=2000 --eval_every=200 --out=runs/small_data.json
"""
import datetime
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from genjax import config as config_lib
from genjax import data as data_lib
from genjax import models
from genjax.bench import environment
from genjax.eval import classifier as classifier_lib
from genjax.eval import coverage, evaluate
from genjax.eval.pictures import to_uint8
from genjax.metric_writers import make_parent_dir
from genjax.train import collapse, parallel
from genjax.train.gan import apply_with_stats
from genjax.train.task import get_task
from experiments import configs

RUNS = ("plain", "ada", "react")
MODELS = ("mlp_gan", "dcgan")

_DATASET = flags.DEFINE_string("dataset", "mnist", "mnist | fashion_mnist | kmnist | digits.")
_MODEL = flags.DEFINE_enum("model", "mlp_gan", MODELS, "experiments/configs/<model>.py.")
_WIDTH = flags.DEFINE_integer("width", 0, "DCGAN width (0: the config's).")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 500, "Training images (the small-data regime).")
_EPOCHS = flags.DEFINE_integer("epochs", 2000, "Epochs per run.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 200, "Epochs between evaluations.")
_BATCH = flags.DEFINE_integer("batch_size", 50, "Batch size.")
_NUM = flags.DEFINE_integer("num", 2000, "Samples scored per evaluation.")
_RUNS = flags.DEFINE_list("runs", list(RUNS), f"Any of {RUNS}.")
_SEED = flags.DEFINE_integer("seed", 0, "Init and training seed of every run (the evaluation "
                             "samples use one key per epoch, the same for every seed).")
_TARGET = flags.DEFINE_float("ada_target", 0.6, "ADA target for r_t.")
_KIMG = flags.DEFINE_float("ada_kimg", 20.0, "ADA speed: kimg for p to move by 1.")
_GAP = flags.DEFINE_float("react_gap", 0.2, "react: switch ADA on when r_train - r_test "
                          "exceeds this (D memorising) or the detector fires.")
_OUT = flags.DEFINE_string("out", "", "JSON output path.")

COLUMNS = ("run", "epoch", "step", "fid", "kid", "coverage", "class_coverage", "d_loss",
           "r_train", "r_test", "gap", "ada_p", "ada_r_t", "ada_on", "entropy", "fired")


def run_config(run: str):
  return configs.load(_MODEL.value, width=_WIDTH.value, overrides={
      "dataset": _DATASET.value, "batch_size": _BATCH.value, "seed": _SEED.value,
      "ada_target": _TARGET.value, "ada_kimg": _KIMG.value, "ada": run == "ada"})


def should_react(fired: bool, gap: float, max_gap: float) -> bool:
  """The react run's rule: the detector fired, or D tells seen from unseen real images
  (gap = r_train - r_test) by more than `max_gap`."""
  return fired or gap > max_gap


def to_markdown(rows: list[dict]) -> str:
  fmt = {"fid": "{:.1f}", "kid": "{:.4f}", "coverage": "{:.3f}", "class_coverage": "{:.1f}",
         "d_loss": "{:.3f}", "r_train": "{:.3f}", "r_test": "{:.3f}", "gap": "{:.3f}",
         "ada_p": "{:.3f}", "ada_r_t": "{:.3f}", "entropy": "{:.3f}"}
  cell = lambda k, v: ("-" if v is None else ("yes" if v else "no") if isinstance(v, bool)
                      else fmt.get(k, "{}").format(v))
  lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
  lines += ["| " + " | ".join(cell(k, r[k]) for k in COLUMNS) + " |" for r in rows]
  return "\n".join(lines)


def train_run(run: str, train, held, features_fn, real_features, start=None
              ) -> tuple[list[dict], tuple | None]:
  """Rows of one run, and for 'plain' the fork point of 'react': (next epoch, host copy of
  the state, detector state) at the first evaluation where `should_react` holds, else None.
  `start` (such a fork point) makes the run continue from there with ADA on: since keys
  come from fold_in(key, step), that equals rerunning plain up to the switch."""
  c = run_config(run)
  task, ada_task = get_task(c), get_task(config_lib.override(c, {"ada": True}))
  _, disc = models.get_gan(c)
  mesh = parallel.make_mesh(1)
  images, labels = parallel.to_device_dataset(train.images, train.labels, mesh)
  plain_epoch = parallel.make_epoch(task, mesh, "jit", c.batch_size)
  ada_epoch = parallel.make_epoch(ada_task, mesh, "jit", c.batch_size)
  d_sign = jax.jit(lambda s, x: jnp.mean(jnp.sign(
      apply_with_stats(disc, s.d_params, s.d_stats, x, train=False)[0])))
  sample = jax.jit(task.sample, static_argnums=2)
  det = collapse.collapse_detector(warmup=2)
  seen = data_lib.to_float(train.images)
  if start is None:
    first, det_state = 1, det.init()
    state = jax.jit(task.init)(jax.random.PRNGKey(c.seed), {"image": seen[:1]})  # As the loop
  else:
    first, state, det_state = start
  state = parallel.put_replicated(state, mesh)
  steps_per_epoch = len(train.images) // c.batch_size
  switched, t0, rows, fork = run == "ada" or start is not None, time.time(), [], None
  for epoch in range(first, _EPOCHS.value + 1):
    state, m = (ada_epoch if switched else plain_epoch)(state, images, labels)
    if epoch % _EVAL_EVERY.value and epoch != _EPOCHS.value:
      continue
    m = {k: float(np.mean(v)) for k, v in jax.device_get(m).items()}
    fake = to_uint8(jax.device_get(sample(state, jax.random.PRNGKey(10_000 + epoch),
                                          _NUM.value)))
    fake_features, fake_probs = features_fn(fake)
    scores = evaluate.evaluate_features(real_features, fake_features, fake_probs,
                                        kid_subset_size=min(1000, _NUM.value), seed=c.seed)
    report, det_state = det.update(
        jnp.asarray(coverage.predicted_class_histogram(fake_probs), jnp.float32), det_state)
    r_train, r_test = float(d_sign(state, seen)), float(d_sign(state, held))
    row = dict(run=run, epoch=epoch, step=epoch * steps_per_epoch, fid=scores["fid"],
               kid=scores["kid"], coverage=scores["coverage"],
               class_coverage=scores["class_coverage"], d_loss=m["d_loss"],
               g_loss=m["g_loss"], r_train=r_train, r_test=r_test, gap=r_train - r_test,
               ada_p=float(state.ada.p), ada_r_t=m.get("ada_r_t"),
               ada_on=switched,
               entropy=float(report.entropy) + 0.0, fired=bool(report.fired),
               seconds=time.time() - t0)
    rows.append(row)
    print(json.dumps(row), flush=True)
    if run == "plain" and fork is None and should_react(row["fired"], row["gap"], _GAP.value):
      # The reaction: from the next epoch on, D sees adaptive augments.
      fork = (epoch + 1, jax.device_get(state), det_state)
  return rows, fork


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if set(_RUNS.value) - set(RUNS):
    raise app.UsageError(f"Unknown runs {sorted(set(_RUNS.value) - set(RUNS))}; known {RUNS}.")
  if "react" in _RUNS.value and "plain" not in _RUNS.value:
    raise app.UsageError("--runs=react forks from the plain run: add plain.")
  if (min(_EPOCHS.value, _EVAL_EVERY.value, _BATCH.value) < 1 or _NUM_TRAIN.value < _BATCH.value
      or _NUM.value < classifier_lib.FEATURE_DIM):
    raise app.UsageError(
        f"--epochs={_EPOCHS.value}, --eval_every={_EVAL_EVERY.value} and --batch_size="
        f"{_BATCH.value} must be >= 1, --num_train={_NUM_TRAIN.value} >= --batch_size and "
        f"--num={_NUM.value} >= {classifier_lib.FEATURE_DIM} (FID in the classifier's features).")
  if _OUT.value:  # Made now: a missing folder failed the write after every run had finished.
    make_parent_dir(_OUT.value)
  logging.set_verbosity(logging.WARNING)
  clf = classifier_lib.load(_DATASET.value)
  features_fn = evaluate.classifier_features(clf)
  test = data_lib.load(_DATASET.value, "test")
  real_features, _ = features_fn(test.images)
  train = data_lib.balanced_subset(data_lib.load(_DATASET.value, "train"), _NUM_TRAIN.value)
  held = data_lib.to_float(test.images[:_NUM_TRAIN.value])
  run = lambda name, start=None: train_run(name, train, held, features_fn, real_features,
                                          start)
  rows, plain_rows, fork = [], [], None
  if "plain" in _RUNS.value:
    plain_rows, fork = run("plain")
    rows += plain_rows
  if "ada" in _RUNS.value:
    rows += run("ada")[0]
  if "react" in _RUNS.value and fork is None:
    print("react: plain never met the reaction rule; nothing to fork.", flush=True)
  elif "react" in _RUNS.value:  # plain's rows up to the switch, then ADA from the fork.
    rows += [dict(r, run="react") for r in plain_rows if r["epoch"] < fork[0]]
    rows += run("react", fork)[0]
  table = to_markdown(rows)
  print(table)
  if _OUT.value:
    flag_values = {f: flags.FLAGS[f].value for f in (
        "dataset", "model", "width", "num_train", "epochs", "eval_every", "batch_size", "num",
        "runs", "seed", "ada_target", "ada_kimg", "react_gap")}
    with open(_OUT.value, "w") as f:
      json.dump({"date": datetime.date.today().isoformat(), "env": environment(),
                 "flags": flag_values, "rows": rows, "table": table}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
