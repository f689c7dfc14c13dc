"""Train a genjax model. Resumes from the latest checkpoint when --workdir has one.

  python experiments/train.py --config=experiments/configs/mlp_gan.py --workdir=runs/gan
  python experiments/train.py --config=experiments/configs/mlp_gan.py:mnist \
      --config.epochs=3 --workdir=runs/gan_mnist
"""
from absl import app, flags, logging
from ml_collections import config_flags

from genjax.train.loop import logged_epochs, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and "
                               "pictures.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO.
  config, workdir = _CONFIG.value, _WORKDIR.value
  train(config, workdir)
  epochs = logged_epochs(workdir)
  if epochs < config.epochs:  # SIGTERM: the loop checkpointed and returned early.
    print(f"Stopped early after epoch {epochs} of {config.epochs} (checkpointed); run the "
          "same command to resume.")
    return
  print(f"Done. Outputs in {workdir}: samples/, loss_curve.png, metrics.jsonl, checkpoints/")


if __name__ == "__main__":
  app.run(main)
