"""Train the feature classifier that evaluation measures samples with.

  python experiments/train_classifier.py --dataset mnist [--workdir DIR] [--epochs 5]
saves into DIR (default `$GENJAX_CACHE_DIR/classifiers/<dataset>`, else
`~/.cache/genjax/classifiers/<dataset>`), where `experiments/evaluate.py` looks for it.
"""
import os

from absl import app, flags, logging

from genjax.data import DATASETS
from genjax.eval import classifier

_DATASET = flags.DEFINE_enum("dataset", None, list(DATASETS), "Dataset to classify.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where to save the classifier (default: the "
                               "cache directory evaluation reads).")
_EPOCHS = flags.DEFINE_integer("epochs", 8, "Training epochs.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "Peak Adam learning rate (cosine decay).")
_SHIFT = flags.DEFINE_integer("max_shift", -1, "Random-shift augmentation in pixels (0: off; "
                              "-1: 2 for digit datasets, 0 for fashion_mnist).")
_MAX_TRAIN = flags.DEFINE_integer("max_train", 0, "Use only this many training images "
                                  "(0: all; for smoke tests).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data folder (default $GENJAX_DATA_DIR).")
flags.mark_flags_as_required(["dataset"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO.
  directory = _WORKDIR.value or classifier.default_dir(_DATASET.value)
  if os.path.isdir(directory) and os.listdir(directory):
    # Its checkpoint's step would refuse the new one only after the whole training.
    raise app.UsageError(f"{directory} is not empty (an earlier classifier?): delete it or "
                         "give another --workdir.")
  clf = classifier.train(_DATASET.value, directory, epochs=_EPOCHS.value,
                         batch_size=_BATCH.value, learning_rate=_LR.value,
                         max_shift=None if _SHIFT.value < 0 else _SHIFT.value,
                         max_train=_MAX_TRAIN.value,
                         seed=_SEED.value, data_dir=_DATA_DIR.value)
  print(f"Saved the {_DATASET.value} classifier (test accuracy "
        f"{clf.meta['test_accuracy']:.4f}) in {directory}")


if __name__ == "__main__":
  app.run(main)
