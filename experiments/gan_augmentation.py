"""Must-show 5 (augmentation half): does a class-conditional GAN trained on N labelled images
help a classifier that has only those N labels?

For each N in --num_labels (class-balanced: the first N/10 training images of each class):
  (a) the cGAN (experiments/configs/cgan.py) trains on those N images only, through the one
      host loop (`config.num_train = N`), in <workdir>/cgan_n<N> (resumed if already there);
  (b) the in-project classifier CNN (genjax.eval.classifier) trains, for each seed, on the N
      real images alone and on the N real images plus --num_fake cGAN samples with their
      conditioning labels (balanced over classes), the real images repeated so they make
      --real_fraction of the pool; both arms take the same number of steps;
  (c) both are scored on the whole test split; the gain is paired by seed.
Prints a markdown table and writes JSON to --out.

  GENJAX_DATA_DIR=... python experiments/gan_augmentation.py --dataset=mnist \
      --num_labels=100,1000 --seeds=3 --workdir=runs/aug_gain
"""
import json
import os
import time

import jax
import numpy as np
from absl import app, flags, logging

from genjax import data as data_lib
from genjax import sampling
from genjax.eval import augmentation as aug
from genjax.eval import classifier as classifier_lib
from genjax.metric_writers import make_parent_dir
from genjax.train import loop
from genjax.train.gan_presets import DATASETS as PRESET_DATASETS
from genjax.train.task import get_task
from experiments import configs

_DATASET = flags.DEFINE_string("dataset", "mnist", "Dataset (its train and test splits).")
_NUM_LABELS = flags.DEFINE_list("num_labels", ["100", "1000"], "Labelled training images N "
                                "(multiples of 10, class-balanced).")
_NUM_FAKE = flags.DEFINE_integer("num_fake", 10000, "cGAN samples M added (labels cycle "
                                 "0..9, so M/10 per class when 10 divides M).")
_REAL_FRACTION = flags.DEFINE_float("real_fraction", 0.5, "Share of real images in the "
                                    "mixed pool (real set repeated to reach it).")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Classifier seeds per cell.")
_CGAN_WIDTH = flags.DEFINE_integer("cgan_width", 8, "cGAN model_args.width.")
_CGAN_STEPS = flags.DEFINE_integer("cgan_steps", 1500, "cGAN steps (rounded up to epochs).")
_CGAN_BATCH = flags.DEFINE_integer("cgan_batch", 50, "cGAN batch size.")
_CGAN_OPTIONS = flags.DEFINE_list("cgan_options", [], "Extra cgan.py options, e.g. ada,ls.")
_CLF_STEPS = flags.DEFINE_integer("clf_steps", 1000, "Classifier steps per run (both arms).")
_CLF_BATCH = flags.DEFINE_integer("clf_batch", 64, "Classifier batch size.")
_CLF_LR = flags.DEFINE_float("clf_lr", 1e-3, "Classifier peak learning rate (cosine decay).")
_MAX_SHIFT = flags.DEFINE_integer("max_shift", -1, "Classifier random-shift pixels; -1: the "
                                  "dataset's default (2 for digits datasets).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/aug_gain", "cGAN work directories go here.")
_OUT = flags.DEFINE_string("out", "", "JSON output ('' = <workdir>/augmentation.json).")
_FLAGS = (_DATASET, _NUM_LABELS, _NUM_FAKE, _REAL_FRACTION, _SEEDS, _CGAN_WIDTH, _CGAN_STEPS,
          _CGAN_BATCH, _CGAN_OPTIONS, _CLF_STEPS, _CLF_BATCH, _CLF_LR, _MAX_SHIFT, _WORKDIR,
          _OUT)


def cgan_config(dataset: str, num_train: int, width: int, steps: int, batch_size: int,
                options: list[str]):
  """The cgan.py config trained on the class-balanced first `num_train` images, with one
  checkpoint and one sample grid at the end."""
  opts = set(options) | ({dataset} if dataset in PRESET_DATASETS else set())
  epochs = aug.epochs_for(steps, num_train, batch_size)
  return configs.load("cgan", ",".join(sorted(opts)), overrides={
      "dataset": dataset, "model_args.width": width, "batch_size": batch_size,
      "num_train": num_train, "epochs": epochs, "checkpoint_every": epochs,
      "sample_every": epochs, "tensorboard": False, "progress_bar": False})


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  sizes = [int(n) for n in _NUM_LABELS.value]
  train = data_lib.load(_DATASET.value, "train")
  test = data_lib.load(_DATASET.value, "test")
  for n in sizes:  # A bad N fails here, before any training.
    data_lib.balanced_indices(train.labels, n)
  max_shift = (classifier_lib.default_max_shift(_DATASET.value) if _MAX_SHIFT.value < 0
               else _MAX_SHIFT.value)
  clf_kw = dict(batch_size=_CLF_BATCH.value, learning_rate=_CLF_LR.value, max_shift=max_shift)
  rows = []
  for n in sizes:
    real = data_lib.balanced_subset(train, n)
    steps, t1 = {}, time.time()

    def run_seeds(name, x, y):
      accs = []
      fit, steps[name] = aug.make_fit(x.shape[0], steps=_CLF_STEPS.value, **clf_kw)
      for seed in range(_SEEDS.value):
        accs.append(classifier_lib.accuracy(fit(x, y, seed), test.images, test.labels))
        print(f"N={n} seed={seed} {name}: test accuracy {accs[-1]:.4f} "
              f"({steps[name]} steps)", flush=True)
      return accs

    real_acc = run_seeds("real", real.images, real.labels)
    cfg = cgan_config(_DATASET.value, n, _CGAN_WIDTH.value, _CGAN_STEPS.value,
                      _CGAN_BATCH.value, _CGAN_OPTIONS.value)
    workdir = os.path.join(_WORKDIR.value, f"cgan_n{n}")
    t0 = time.time()
    state = loop.train(cfg, workdir, quiet=True)  # Resumes; returns at once when done.
    gan_secs = time.time() - t0
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), sampling.EXPORT_KEY_TAG)
    fake, fake_labels = sampling.generate(get_task(cfg), state, key, _NUM_FAKE.value)
    images, labels = aug.mix(real.images, real.labels, fake, fake_labels.astype(np.int32),
                             _REAL_FRACTION.value)
    aug_acc = run_seeds("augmented", images, labels)
    grids = sorted(os.listdir(os.path.join(workdir, "samples")))
    row = aug.gain_row(n, real_acc, aug_acc)
    row.update(
        num_fake=int(fake.shape[0]),
        real_repeats=aug.real_repeats(n, int(fake.shape[0]), _REAL_FRACTION.value),
        classifier_steps=steps, cgan_epochs=cfg.epochs,
        cgan_steps=cfg.epochs * (n // cfg.batch_size), cgan_workdir=workdir,
        cgan_grid=os.path.join(workdir, "samples", grids[-1]),
        cgan_seconds_this_call=round(gan_secs, 1),
        classifier_and_sampling_seconds=round(time.time() - t1 - gan_secs, 1))
    rows.append(row)
  table = aug.markdown_table(rows)
  print(table)
  for r in rows:
    print(f"N={r['num_real']}: cGAN grid {r['cgan_grid']}, {r['cgan_steps']} cGAN steps; "
          f"pool = {r['real_repeats']} x {r['num_real']} real + {r['num_fake']} generated; "
          f"classifier steps {r['classifier_steps']}")
  out = _OUT.value or os.path.join(_WORKDIR.value, "augmentation.json")
  make_parent_dir(out)
  flag_values = {h.name: h.value for h in _FLAGS}
  with open(out, "w") as f:
    json.dump({"flags": flag_values, "max_shift": max_shift, "rows": rows,
               "device": str(jax.devices()[0]), "table": table}, f, indent=2)
  print(f"Wrote {out}")


if __name__ == "__main__":
  app.run(main)
