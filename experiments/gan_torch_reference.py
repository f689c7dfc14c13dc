"""Issue 5, Must show 1: the PyTorch tutorial trained as its users run it, evaluated with
genjax's metric, to sit beside the genjax reference GAN trained the same way.

Trains the tutorial (experiments/benchmarks/torch_tutorial.py: per-item ToTensor + Normalize,
shuffled DataLoader, batch 64, BCELoss, Adam 2e-4) for --epochs epochs, draws --num samples,
saves them as `samples.npz` and evaluates them exactly as `experiments/evaluate.py` does
(FID / KID / precision-recall / coverage in the in-project classifier's features against the
test split). The genjax side of the comparison:

  python experiments/train.py --config=experiments/configs/mlp_gan.py:mnist --workdir=W
  python experiments/evaluate.py --workdir W --num 10000

  GENJAX_DATA_DIR=... python experiments/gan_torch_reference.py --epochs=50 --out_dir=runs/torch_ref
"""
import datetime
import json
import os

import numpy as np
from absl import app, flags, logging

from genjax import data as data_lib
from genjax.bench import environment
from genjax.eval import classifier as classifier_lib
from genjax.eval import evaluate
from experiments.benchmarks import torch_tutorial

_DATASET = flags.DEFINE_string("dataset", "mnist", "Training and evaluation dataset.")
_EPOCHS = flags.DEFINE_integer("epochs", 50, "Training epochs (the tutorial's 200 / genjax's "
                               "mnist config's 50).")
_SEED = flags.DEFINE_integer("seed", 0, "torch.manual_seed of the run.")
_NUM = flags.DEFINE_integer("num", 10000, "Samples to evaluate.")
_THREADS = flags.DEFINE_integer("torch_threads", 0, "Intra-op threads (0: torch's default).")
_OUT_DIR = flags.DEFINE_string("out_dir", "runs/torch_reference", "Where samples.npz, "
                               "history.json and eval.json go.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO.
  # What the evaluation needs is checked before the hours of training, not after them.
  if _EPOCHS.value < 1 or _NUM.value < classifier_lib.FEATURE_DIM:
    raise app.UsageError(f"--epochs={_EPOCHS.value} must be >= 1 and --num={_NUM.value} >= "
                         f"{classifier_lib.FEATURE_DIM} (FID in the classifier's features).")
  classifier_lib.load(_DATASET.value)  # A missing classifier names the command to make it.
  data_lib.load(_DATASET.value, "test")
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  stale = os.path.join(_OUT_DIR.value, "eval.json")
  if os.path.exists(stale):  # An earlier run's; never left beside this run's samples.
    os.remove(stale)
  train = data_lib.load(_DATASET.value, "train")

  def report(epoch, d_loss, g_loss, seconds):
    print(f"epoch {epoch}: d_loss {d_loss:.4f} g_loss {g_loss:.4f} ({seconds:.1f} s)",
          flush=True)

  fit = torch_tutorial.with_threads(torch_tutorial.train_tutorial, _THREADS.value)
  G, history = fit(train.images, epochs=_EPOCHS.value, seed=_SEED.value, on_epoch=report)
  images = torch_tutorial.sample_uint8(G, _NUM.value, seed=_SEED.value)
  samples_path = os.path.join(_OUT_DIR.value, "samples.npz")
  np.savez_compressed(samples_path, **{evaluate.SAMPLES_KEY: images})
  with open(os.path.join(_OUT_DIR.value, "history.json"), "w") as f:
    json.dump({"date": datetime.date.today().isoformat(), "env": environment(),
               "epochs": _EPOCHS.value, "seed": _SEED.value, "history": history}, f, indent=1)
  result = evaluate.evaluate_against_dataset(images, _DATASET.value, seed=0)
  result["samples"] = os.path.abspath(samples_path)
  for key, value in result.items():
    if isinstance(value, float):
      print(f"{key:>26}: {value:.5g}")
  with open(os.path.join(_OUT_DIR.value, "eval.json"), "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)


if __name__ == "__main__":
  app.run(main)
