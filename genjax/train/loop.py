"""The one host loop: data onto the devices, epochs, metrics, pictures, checkpoints.

Everything with side effects lives here; the per-epoch work is one jitted call
(`parallel.make_epoch`) and one `device_get` of its metrics.
"""
from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from genjax import config as config_lib
from genjax import data as data_lib
from genjax.checkpoint import Checkpointer
from genjax.eval import pictures
from genjax.metric_writers import JsonlWriter, MultiWriter, TensorboardWriter, read_jsonl
from genjax.train import parallel
from genjax.train.task import Task, get_task

GRID_KEY_TAG = 0x6121D  # The fixed z of the per-epoch sample grid.


class Setup(NamedTuple):
  config: ml_collections.ConfigDict
  task: Task
  mesh: Any
  init: Any            # key -> state (unsharded)
  abstract_state: Any  # ShapeDtypeStructs with the replicated sharding, the restore target


def build(config: ml_collections.ConfigDict, example_images: np.ndarray) -> Setup:
  """Task, mesh and state shapes for `config`; `example_images` is one uint8 batch."""
  config_lib.validate(config)
  mesh = parallel.make_mesh(config.num_devices)
  parallel.check_batch_size(config.batch_size, mesh)
  task = get_task(config)
  example = {"image": data_lib.to_float(np.asarray(example_images[:1]))}

  def init(key):
    return task.init(key, example)

  shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
  rep = parallel.replicated(mesh)
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
                          shapes)
  return Setup(config, task, mesh, init, abstract)


def checkpointer_for(workdir: str, config) -> Checkpointer:
  return Checkpointer(os.path.join(workdir, "checkpoints"),
                      max_to_keep=config.keep_checkpoints,
                      best_metric=config.keep_best_metric, best_mode=config.keep_best_mode)


def load_train_split(config) -> data_lib.Dataset:
  """The training split, without class `config.exclude_label` when that is >= 0."""
  dataset = data_lib.load(config.dataset, "train", data_dir=config.data_dir or None,
                          source=config.data_source)
  if config.exclude_label >= 0:
    keep = dataset.labels != config.exclude_label
    dataset = dataset._replace(images=dataset.images[keep], labels=dataset.labels[keep])
  return dataset


def _drop_records_after(path: str, epoch: int) -> None:
  """On resume, forget metrics of epochs that the restored checkpoint had not reached."""
  if os.path.exists(path):
    keep = [r for r in read_jsonl(path) if r.get("epoch", 0) <= epoch]
    with open(path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in keep)


def train(config: ml_collections.ConfigDict, workdir: str, *, quiet: bool = False) -> Any:
  """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one.

  Writes `config.json`, `metrics.jsonl`, TensorBoard events under `tb/`, sample grids under
  `samples/`, `loss_curve.png` and Orbax checkpoints under `checkpoints/`. Returns the
  final state (replicated over the mesh).
  """
  config_lib.validate(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config_lib.to_json(config))

  dataset = load_train_split(config)
  setup = build(config, dataset.images)
  steps_per_epoch = config_lib.steps_per_epoch(config, len(dataset.labels))
  images, labels = parallel.to_device_dataset(dataset.images, dataset.labels, setup.mesh)

  ckpt = checkpointer_for(workdir, config)
  start_epoch = 0
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(setup.abstract_state)
    start_epoch = int(meta["epoch"])
  else:
    state = parallel.put_replicated(setup.init(jax.random.PRNGKey(config.seed)), setup.mesh)

  metrics_path = os.path.join(workdir, "metrics.jsonl")
  _drop_records_after(metrics_path, start_epoch)
  writers = [JsonlWriter(metrics_path)]
  if config.tensorboard:
    writers.append(TensorboardWriter(os.path.join(workdir, "tb")))
  writer = MultiWriter(writers)

  epoch_fn = parallel.make_epoch(setup.task, setup.mesh, config.parallel, config.batch_size)
  sample_fn = jax.jit(setup.task.sample, static_argnums=2)
  grid_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), GRID_KEY_TAG)
  epochs = range(start_epoch + 1, config.epochs + 1)
  if config.progress_bar and not quiet:
    from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel
    epochs = tqdm(epochs, desc=f"{config.model} on {config.dataset}", unit="epoch",
                  initial=start_epoch, total=config.epochs)
  try:
    for epoch in epochs:
      state, metrics = epoch_fn(state, images, labels)
      scalars = {k: float(np.mean(v)) for k, v in jax.device_get(metrics).items()}
      step = epoch * steps_per_epoch
      writer.write(step, {"epoch": epoch, **scalars})
      if hasattr(epochs, "set_postfix"):
        epochs.set_postfix({k: f"{v:.3f}" for k, v in scalars.items() if k.endswith("loss")})
      last = epoch == config.epochs
      if epoch % config.sample_every == 0 or last:
        grid = sample_fn(state, grid_key, config.num_grid, None)
        pictures.save_grid(grid, os.path.join(workdir, "samples", f"epoch_{epoch:04d}.png"))
      if epoch % config.checkpoint_every == 0 or last:
        ckpt.save(step, state, meta={"epoch": epoch, "steps_per_epoch": steps_per_epoch},
                  metrics=scalars)
    ckpt.wait()
  finally:
    writer.close()
    ckpt.close()
  records = read_jsonl(metrics_path)
  loss_keys = sorted({k for r in records for k in r if k.endswith("loss")})
  pictures.save_curves(records, loss_keys, os.path.join(workdir, "loss_curve.png"),
                       title=f"{config.model} on {config.dataset}")
  return state


def load_trained(workdir: str) -> tuple[ml_collections.ConfigDict, Setup, Any]:
  """(config, setup, state) of the latest checkpoint in a work directory."""
  config = config_lib.load_workdir_config(workdir)
  example = np.zeros((1,) + data_lib.IMAGE_SHAPE, np.uint8)
  setup = build(config, example)
  ckpt = checkpointer_for(workdir, config)
  try:
    state, _ = ckpt.restore(setup.abstract_state)
  finally:
    ckpt.close()
  return config, setup, state
