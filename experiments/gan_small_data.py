"""Must-show 4b: on a small training set, plain DCGAN training lets D overfit; ADA and the
mode-collapse detector react.

Runs (each the same DCGAN on the first --num_train training images):
  plain  -- no augmentation;
  ada    -- adaptive augmentation from the start (p steered by r_t toward --ada_target);
  react  -- plain until the collapse detector fires or D's train/test sign gap passes
            --react_gap, then the
            host switches to the ADA step (same state: the ADA controller rides in it).
Every --eval_every epochs it logs D's overfitting signal (mean sign D on training vs held-out
test images), ADA's p and r_t, and the collapse detector's normalised entropy / coverage of
the predicted classes of 1000 samples (a logistic-regression classifier on the training
split labels them; the histogram is the detector's input). Appends a table to RESULTS.md.

  python experiments/gan_small_data.py --dataset=digits --num_train=500 --epochs=60
"""
import datetime
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from genjax import config as config_lib
from genjax import data as data_lib
from genjax import models
from genjax.train import collapse, parallel
from genjax.train.gan import apply_with_stats
from genjax.train.gan_presets import apply_options
from genjax.train.task import get_task

_DATASET = flags.DEFINE_string("dataset", "digits", "Dataset.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 500, "Training images (the small-data regime).")
_EPOCHS = flags.DEFINE_integer("epochs", 60, "Epochs per run.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 10, "Epochs between evaluations.")
_WIDTH = flags.DEFINE_integer("width", 32, "DCGAN width.")
_BATCH = flags.DEFINE_integer("batch_size", 50, "Batch size.")
_RUNS = flags.DEFINE_list("runs", ["plain", "ada", "react"], "Which runs.")
_TARGET = flags.DEFINE_float("ada_target", 0.6, "ADA target for r_t.")
_KIMG = flags.DEFINE_float("ada_kimg", 20.0, "ADA speed: kimg for p to move by 1.")
_GAP = flags.DEFINE_float("react_gap", 0.2, "react: switch ADA on when r_train - r_test "
                          "exceeds this (D memorising) or the detector fires.")
_RESULTS = flags.DEFINE_string("results", "experiments/RESULTS.md", "'' = print only.")


def classifier(train):
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  x = train.images.reshape(len(train.labels), -1) / 255.0
  return LogisticRegression(max_iter=300).fit(x, train.labels)


def main(argv):
  del argv
  full = data_lib.load(_DATASET.value, "train")
  test = data_lib.load(_DATASET.value, "test")
  clf = classifier(full)
  images, labels = full.images[:_NUM_TRAIN.value], full.labels[:_NUM_TRAIN.value]
  held = data_lib.to_float(test.images[:_NUM_TRAIN.value])
  seen = data_lib.to_float(images)
  mesh = parallel.make_mesh(1)
  dev_images, dev_labels = parallel.to_device_dataset(images, labels, mesh)
  rows = []
  for run in _RUNS.value:
    c = apply_options(config_lib.base_config(), set(), "dcgan")
    c = config_lib.override(c, {"dataset": _DATASET.value, "model_args.width": _WIDTH.value,
                                "batch_size": _BATCH.value, "ada_target": _TARGET.value,
                                "ada_kimg": _KIMG.value, "ada": run == "ada"})
    task = get_task(c)
    ada_task = get_task(config_lib.override(c, {"ada": True}))
    _, disc = models.get_gan(c)
    epoch_fn = parallel.make_epoch(task, mesh, "jit", c.batch_size)
    ada_epoch = (parallel.make_epoch(ada_task, mesh, "jit", c.batch_size)
                 if run == "react" else epoch_fn)
    d_sign = jax.jit(lambda s, x: jnp.mean(jnp.sign(apply_with_stats(disc, s.d_params, s.d_stats, x,
                                                            train=False)[0])))
    sample = jax.jit(task.sample, static_argnums=2)
    det = collapse.collapse_detector(warmup=2)
    det_state = det.init()
    state = parallel.put_replicated(task.init(jax.random.PRNGKey(0), {"image": seen[:1]}),
                                    mesh)
    switched, t0 = run == "ada", time.time()
    for epoch in range(1, _EPOCHS.value + 1):
      state, m = (ada_epoch if switched else epoch_fn)(state, dev_images, dev_labels)
      if epoch % _EVAL_EVERY.value and epoch != _EPOCHS.value:
        continue
      m = {k: float(np.mean(v)) for k, v in jax.device_get(m).items()}
      fake = np.asarray(sample(state, jax.random.PRNGKey(epoch), 1000, None))
      pred = clf.predict(((fake + 1) / 2).reshape(1000, -1))
      report, det_state = det.update(jnp.asarray(np.bincount(pred, minlength=10), jnp.float32),
                                     det_state)
      r_train, r_test = float(d_sign(state, seen)), float(d_sign(state, held))
      fired = bool(report.fired)
      row = dict(run=run, epoch=epoch, d_loss=m["d_loss"], r_train=r_train, r_test=r_test,
                 p=float(state.ada.p), entropy=float(report.entropy) + 0.0,
                 coverage=float(report.coverage), fired=fired, ada_on=switched,
                 secs=time.time() - t0)
      rows.append(row)
      print(row, flush=True)
      if run == "react" and not switched and (fired or r_train - r_test > _GAP.value):
        switched = True  # The reaction: from the next epoch on, D sees adaptive augments.
  cmd = (f"PYTHONPATH=. python experiments/gan_small_data.py --dataset={_DATASET.value} "
         f"--num_train={_NUM_TRAIN.value} --epochs={_EPOCHS.value} --eval_every="
         f"{_EVAL_EVERY.value} --width={_WIDTH.value} --batch_size={_BATCH.value} "
         f"--runs={','.join(_RUNS.value)} --ada_target={_TARGET.value} --ada_kimg={_KIMG.value} "
         f"--react_gap={_GAP.value}")
  lines = [f"\n### Small-data run: D overfitting, ADA and the collapse detector (DCGAN, "
           f"{_NUM_TRAIN.value} {_DATASET.value} images)\n",
           f"Device: CPU, 2 cores (shared). Date: {datetime.date(2026, 11, 23)}. "
           f"Command: `{cmd}`\n",
           "r_train / r_test: mean sign D(x) on the training images / as many held-out test "
           "images (D in inference mode, no augmentation); a growing gap is D memorising. "
           "entropy / coverage: the collapse detector's normalised entropy and class "
           "coverage of 1000 samples' predicted classes. ADA on: whether D saw augmented "
           "images in that epoch.\n",
           "| run | epoch | D loss | r_train | r_test | gap | ADA p | ADA on | entropy | "
           "coverage | detector fired |",
           "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
  for r in rows:
    lines.append(f"| {r['run']} | {r['epoch']} | {r['d_loss']:.3f} | {r['r_train']:.3f} | "
                 f"{r['r_test']:.3f} | {r['r_train'] - r['r_test']:.3f} | {r['p']:.3f} | "
                 f"{'yes' if r['ada_on'] else 'no'} | {r['entropy']:.3f} | "
                 f"{r['coverage']:.2f} | {'yes' if r['fired'] else 'no'} |")
  text = "\n".join(lines) + "\n"
  print(text)
  if _RESULTS.value:
    with open(_RESULTS.value, "a") as f:
      f.write(text)


if __name__ == "__main__":
  app.run(main)
