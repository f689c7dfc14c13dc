"""Issue 5, Must show 1: the quality table. FID / KID / precision-recall / coverage of the
reference MLP GAN, DCGAN and the conditional GAN under each loss of the GAN family, all at one
stated budget (the same epochs of the same dataset for every cell).

Each cell is `experiments/configs/<model>.py:<dataset>,<loss>` trained --epochs epochs with
the training loop's own jitted epoch (no checkpoints or pictures), then --num samples are
scored in the in-project classifier's features against the test split, the same metrics as
`experiments/evaluate.py`. --width overrides the conv GANs' width (64 in the configs) for a
CPU budget. Rows stream to stdout as JSON; the table is printed at the end and --out gets
all of it.

  GENJAX_DATA_DIR=... python experiments/gan_quality.py --epochs=3 --width=16 \
      --models=mlp_gan,dcgan,cgan --losses=ns,minimax,ls,hinge,wgan_gp --out=runs/quality.json
"""
import datetime
import json
import time

import jax
import numpy as np
from absl import app, flags, logging

from genjax import data as data_lib
from genjax.bench import environment
from genjax.eval import classifier as classifier_lib
from genjax.eval import evaluate
from genjax.eval.pictures import to_uint8
from genjax.metric_writers import make_parent_dir
from genjax.train import loop, parallel
from genjax.train.gan_presets import LOSSES
from experiments import configs

MODELS = ("mlp_gan", "dcgan", "cgan")
METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "class_coverage",
           "classifier_score")

_DATASET = flags.DEFINE_string("dataset", "mnist", "mnist | fashion_mnist | kmnist.")
_MODELS = flags.DEFINE_list("models", list(MODELS), f"Any of {MODELS}.")
_LOSSES = flags.DEFINE_list("losses", list(LOSSES), f"Any of {sorted(LOSSES)}.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Training epochs of every cell (the budget).")
_WIDTH = flags.DEFINE_integer("width", 0, "Conv GAN width (0: the config's).")
_SEED = flags.DEFINE_integer("seed", 0, "Init / sampling seed of every cell.")
_NUM = flags.DEFINE_integer("num", 10000, "Samples scored per cell.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 0, "Train on a class-balanced subset "
                                  "(0: the whole split; tests use a few hundred).")
_OUT = flags.DEFINE_string("out", "", "JSON output path.")


def cell_config(model: str, loss: str, dataset: str, *, epochs: int, width: int = 0,
                seed: int = 0):
  """`experiments/configs/<model>.py:<loss>` on `dataset` at the table's budget (the
  configs' dataset options only set the dataset and an epoch count, replaced here)."""
  if model not in MODELS or loss not in LOSSES:
    raise ValueError(f"Unknown cell {model}/{loss}: models {MODELS}, losses {sorted(LOSSES)}.")
  return configs.load(model, loss, width=width,
                      overrides={"dataset": dataset, "epochs": epochs, "seed": seed})


def train_cell(config, train) -> tuple:
  """(task, final state, per-epoch mean losses) of one cell."""
  setup = loop.build(config, train.images[:1])
  images, labels = parallel.to_device_dataset(train.images, train.labels, setup.mesh)
  epoch = parallel.make_epoch(setup.task, setup.mesh, config.parallel, config.batch_size)
  state = parallel.put_replicated(setup.init(jax.random.PRNGKey(config.seed)), setup.mesh)
  history = []
  for _ in range(config.epochs):
    state, m = epoch(state, images, labels)
    history.append({k: float(np.mean(jax.device_get(v))) for k, v in m.items()})
  return setup.task, state, history


def score_cell(task, state, features_fn, real_features, num: int, seed: int) -> dict:
  """The cell's sample metrics; NaN for each when its training diverged to non-finite samples
  (one diverged cell is a result of the table, not the end of the run)."""
  try:
    images = to_uint8(jax.device_get(task.sample(state, jax.random.PRNGKey(10_000 + seed),
                                                 num)))
  except FloatingPointError as e:
    logging.warning("Scoring the cell as NaN: %s", e)
    return {m: float("nan") for m in METRICS}
  fake_features, fake_probs = features_fn(images)
  return evaluate.evaluate_features(real_features, fake_features, fake_probs, seed=seed)


def cell_record(model: str, loss: str, config, num_train: int, history: list[dict],
                scores: dict) -> dict:
  return {"model": model, "loss": loss, "epochs": config.epochs,
          "steps": config.epochs * (num_train // config.batch_size),
          "width": config.model_args.get("width"), **scores,
          "d_loss": history[-1]["d_loss"], "g_loss": history[-1]["g_loss"], "history": history}


def to_markdown(rows: list[dict]) -> str:
  lines = ["| model | loss | " + " | ".join(METRICS) + " | final D loss | final G loss |",
           "|---|---|" + "---:|" * (len(METRICS) + 2)]
  for r in rows:
    values = " | ".join(f"{r[m]:.4g}" for m in METRICS)
    lines.append(f"| {r['model']} | {r['loss']} | {values} | {r['d_loss']:.3f} | "
                 f"{r['g_loss']:.3f} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  cells = [(m, l) for m in _MODELS.value for l in _LOSSES.value]
  configs = [cell_config(m, l, _DATASET.value, epochs=_EPOCHS.value, width=_WIDTH.value,
                         seed=_SEED.value) for m, l in cells]  # Bad names fail first.
  if _EPOCHS.value < 1 or _NUM.value < classifier_lib.FEATURE_DIM or _NUM_TRAIN.value < 0:
    raise app.UsageError(f"--epochs={_EPOCHS.value} must be >= 1, --num={_NUM.value} >= "
                         f"{classifier_lib.FEATURE_DIM} (FID in the classifier's features) "
                         f"and --num_train={_NUM_TRAIN.value} >= 0.")
  if _OUT.value:  # Made now: a missing folder failed the write after every cell had run.
    make_parent_dir(_OUT.value)
  env = environment()
  clf = classifier_lib.load(_DATASET.value)
  features_fn = evaluate.classifier_features(clf)
  real_features, _ = features_fn(data_lib.load(_DATASET.value, "test").images)
  train = data_lib.load(_DATASET.value, "train")
  if _NUM_TRAIN.value:
    train = data_lib.balanced_subset(train, _NUM_TRAIN.value)
  rows = []
  for (model, loss), config in zip(cells, configs, strict=True):
    t = time.time()
    task, state, history = train_cell(config, train)
    row = cell_record(model, loss, config, len(train.images), history,
                      score_cell(task, state, features_fn, real_features, _NUM.value,
                                 config.seed))
    row["seconds"] = time.time() - t
    print(json.dumps({k: v for k, v in row.items() if k != "history"}), flush=True)
    rows.append(row)
  print(to_markdown(rows))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump({"date": datetime.date.today().isoformat(), "env": env,
                 "flags": {"dataset": _DATASET.value, "epochs": _EPOCHS.value,
                           "width": _WIDTH.value, "seed": _SEED.value, "num": _NUM.value,
                           "num_train": _NUM_TRAIN.value},
                 "rows": rows}, f, indent=1)


if __name__ == "__main__":
  app.run(main)
