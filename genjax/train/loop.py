"""The one host loop: data onto the devices, epochs, metrics, pictures, checkpoints.

Everything with side effects lives here; the per-epoch work is one jitted call
(`parallel.make_epoch`) and one `device_get` of its metrics.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from genjax import config as config_lib
from genjax import data as data_lib
from genjax.checkpoint import Checkpointer, CheckpointMismatchError
from genjax.eval import pictures
from genjax.metric_writers import (JsonlWriter, MultiWriter, TensorboardWriter, read_jsonl,
                                   write_atomic)
from genjax.train import guard as guard_lib
from genjax.train import distributed, parallel
from genjax.train import ema as ema_lib
from genjax.train import warm_start as warm_start_lib
from genjax.train.task import Task, get_task

GRID_KEY_TAG = 0x6121D  # The fixed z of the per-epoch sample grid.


class Setup(NamedTuple):
  config: ml_collections.ConfigDict
  task: Task
  mesh: Any
  init: Any            # key -> state (unsharded)
  abstract_state: Any  # ShapeDtypeStructs with the replicated sharding, the restore target


def build(config: ml_collections.ConfigDict, example_images: np.ndarray, *,
          training: bool = True) -> Setup:
  """Task, mesh and state shapes for `config`; `example_images` is one uint8 batch. Sets
  JAX's default PRNG to `config.prng_impl` (`genjax.config.use_prng_impl`). Not `training`
  (a reader of a trained run): the mesh is every device here, whatever the run's
  `num_devices` and batch size, which only split its training batches."""
  config_lib.validate(config)
  config_lib.use_prng_impl(config)
  mesh = parallel.make_mesh(config.num_devices if training else 0)
  if training:
    parallel.check_batch_size(config.batch_size, mesh)
  task = get_task(config)
  example = {"image": data_lib.to_float(np.asarray(example_images[:1]))}

  @jax.jit  # One compiled program: op by op, a conv model's init compiles each op (~20 s).
  def init(key):
    return task.init(key, example)

  shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
  rep = parallel.replicated(mesh)
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
                          shapes)
  return Setup(config, task, mesh, init, abstract)


def checkpointer_for(workdir: str, config, *, reader: bool = False) -> Checkpointer:
  """The run's checkpoints. A `reader` (evaluation, sampling, a warm start) never moves a
  step directory aside: a training run may be writing it."""
  return Checkpointer(os.path.join(workdir, "checkpoints"),
                      max_to_keep=config.keep_checkpoints,
                      best_metric=config.keep_best_metric, best_mode=config.keep_best_mode,
                      async_save=config.async_checkpoint,
                      moves_bad_steps=distributed.is_writer() and not reader)


def load_train_split(config) -> data_lib.Dataset:
  """The training split, without class `config.exclude_label` when that is >= 0, cut to
  the class-balanced first `config.num_train` examples when that is > 0."""
  dataset = data_lib.load(config.dataset, "train", data_dir=config.data_dir or None,
                          source=config.data_source)
  if config.exclude_label >= 0:
    keep = dataset.labels != config.exclude_label
    dataset = dataset._replace(images=dataset.images[keep], labels=dataset.labels[keep])
  if config.num_train > 0:
    dataset = data_lib.balanced_subset(dataset, config.num_train)
  return dataset


def logged_epochs(workdir: str) -> int:
  """The last epoch recorded in `workdir`'s metrics.jsonl (0 when none)."""
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return int(max((r.get("epoch", 0) for r in records), default=0))


def validate_dataset(dataset: data_lib.Dataset, batch_size: int) -> None:
  """The training split the models expect: uint8 [N, 28, 28, 1] images 0..255 that are not
  all one value, int labels 0..9, at least one full batch. One error naming the problem."""
  images, labels = np.asarray(dataset.images), np.asarray(dataset.labels)
  what = f"dataset {dataset.name!r} split {dataset.split!r}"
  if images.dtype != np.uint8:
    raise ValueError(f"{what}: images must be uint8 0..255, got {images.dtype} (convert "
                     "floats with np.round(x * 255).astype(np.uint8)).")
  if images.ndim != 4 or images.shape[1:] != data_lib.IMAGE_SHAPE:
    raise ValueError(f"{what}: images must have shape [N, "
                     f"{', '.join(map(str, data_lib.IMAGE_SHAPE))}], got {images.shape}.")
  if not np.issubdtype(labels.dtype, np.integer) or labels.shape != images.shape[:1]:
    raise ValueError(f"{what}: labels must be integers of shape [{images.shape[0]}], got "
                     f"{labels.dtype} {labels.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() >= data_lib.NUM_CLASSES):
    raise ValueError(f"{what}: labels must lie in 0..{data_lib.NUM_CLASSES - 1}, got "
                     f"{labels.min()}..{labels.max()}.")
  if images.shape[0] < batch_size:
    raise ValueError(f"{what}: {images.shape[0]} examples, fewer than one batch of "
                     f"{batch_size}.")
  if images.min() == images.max():
    raise ValueError(f"{what}: every pixel is {images.min()}; the images are blank.")


def _restore_latest(setup: Setup, ckpt: Checkpointer) -> tuple[Any, dict]:
  """(state, meta) of the latest good checkpoint. One made without the parameters' average
  that this config keeps (`--config.ema_decay` added later) comes back with the average
  started at its parameters."""
  try:
    return ckpt.restore(setup.abstract_state)
  except CheckpointMismatchError:
    if not ema_lib.has_average(setup.abstract_state):
      raise
  state, meta = ckpt.restore(ema_lib.without_average(setup.abstract_state))
  state = parallel.put_replicated(ema_lib.start_average(state, setup.abstract_state),
                                  setup.mesh)
  logging.info("genjax: the checkpoint has no moving average of the parameters; starting one "
               "at step %d.", int(jax.device_get(state.step)))
  return state, meta


def check_resumable(meta: dict, steps_per_epoch: int, directory: str,
                    prng_impl: str | None = None) -> None:
  """A resumed run must keep its steps per epoch (batch size, training split): checkpoints
  and metrics are numbered epoch x steps per epoch, and a renumbered run would overwrite
  nothing and lose its new checkpoints. It must also keep its PRNG: threefry2x32 and
  philox4x32 keys have one shape, so only the meta (written since 2026-12-02) tells them
  apart."""
  saved_prng = meta.get("prng_impl")
  if prng_impl is not None and saved_prng is not None and saved_prng != prng_impl:
    raise ValueError(
        f"The checkpoint of epoch {meta.get('epoch')} in {directory} was made with "
        f"prng_impl={saved_prng!r}; this config has {prng_impl!r}. Resume with "
        f"--config.prng_impl={saved_prng}, or start a new work directory from its parameters "
        "with --config.init_from.")
  saved = meta.get("steps_per_epoch")
  if saved is not None and int(saved) != steps_per_epoch:
    raise ValueError(
        f"The checkpoint of epoch {meta.get('epoch')} in {directory} was made with {saved} "
        f"steps per epoch; this config gives {steps_per_epoch} (another batch_size or "
        "training split). Resume with the run's own settings, or start a new work directory "
        "from its parameters with --config.init_from.")


def _restore_or_init(setup: Setup, ckpt: Checkpointer,
                     steps_per_epoch: int) -> tuple[Any, int]:
  """(state, epoch) from the latest good checkpoint, else a fresh state at epoch 0."""
  if ckpt.latest_step() is not None:
    state, meta = _restore_latest(setup, ckpt)
    check_resumable(meta, steps_per_epoch, ckpt.directory, setup.config.prng_impl)
    return state, int(meta["epoch"])
  fresh = setup.init(jax.random.PRNGKey(setup.config.seed))
  if setup.config.init_from:
    fresh = _warm_started(fresh, setup.config)
  return parallel.put_replicated(fresh, setup.mesh), 0


def _warm_started(fresh: Any, config: ml_collections.ConfigDict) -> Any:
  """`fresh` with the parameters of config.init_from's latest checkpoint
  (`genjax.train.warm_start`)."""
  source_dir = config.init_from
  if not os.path.isdir(os.path.join(source_dir, "checkpoints")):
    raise warm_start_lib.WarmStartError(
        f"config.init_from={source_dir!r}: no checkpoints/ there (not a genjax work directory).")
  _, _, source = load_trained(source_dir)
  config_lib.use_prng_impl(config)  # Loading the source set its own PRNG; this run's again.
  logging.info("genjax: starting from the parameters of %s (step %d).", source_dir,
               int(jax.device_get(source.step)))
  return warm_start_lib.warm_start(jax.device_get(fresh), jax.device_get(source), source_dir)


def make_epoch_fn(setup: Setup, nan_step: int = -1, multi_process: bool = False):
  """The loop's jitted epoch for `setup`: guarded as its config says, `nan_step` >= 0 injects
  a NaN there (fault tests); the benchmarks time and profile this same function."""
  c = setup.config
  options = checked_compiler_options(c)
  # Multi-process: each device shuffles its share of its process's block.
  make = distributed.make_sharded_epoch if multi_process else parallel.make_epoch
  return make(setup.task, setup.mesh, c.parallel, c.batch_size,
              guard=config_lib.nan_guard(c), nan_step=nan_step, unroll=c.scan_unroll,
              compiler_options=options)


def checked_compiler_options(config) -> dict:
  """`config.xla_options` as jax.jit's compiler_options, first compiled into a trivial
  program on this backend, so that a name or value XLA does not know is one clear error
  naming the config key before any training (XLA checks them only when it compiles)."""
  options = config_lib.compiler_options(config)
  if options:
    try:
      jax.jit(lambda: jnp.zeros(()), compiler_options=options).lower().compile()
    except jax.errors.JaxRuntimeError as e:
      raise ValueError(f"config.xla_options={config.xla_options!r}: XLA refused it: {e}"
                       ) from None
  return options


def _guard_failure(record: dict, metrics: dict, state: Any, epoch: int, ckpt: Checkpointer,
                   check: str) -> guard_lib.NonFiniteError | None:
  """The error to raise if the epoch's guard tripped, else None."""
  if not record:
    return None
  bad = guard_lib.describe(record, guard_lib.term_names(list(metrics), state))
  if bad is None:
    return None
  good = ckpt.latest_step()
  return guard_lib.NonFiniteError(
      f"{guard_lib.fault_summary(bad, epoch, check)}; training stopped and saved nothing of this "
      "epoch. "
      + (f"Last good checkpoint: {ckpt.step_path(good)} (intact)." if good is not None
         else "No checkpoint was written yet."))


def _save_grid(images: np.ndarray, path: str) -> None:
  """Writes the epoch's sample grid. Non-finite samples get a warning and no picture: with
  the guard on, the epoch's checks find the cause first; with nan_policy='off' training
  goes on as that policy promises."""
  try:
    pictures.save_grid(images, path)
  except FloatingPointError as e:
    logging.warning("genjax: %s not written: %s", path, e)


@contextlib.contextmanager
def _sigterm_flag():
  """Yields a callable that says whether SIGTERM arrived; the loop checks it once per
  epoch (or rollback), checkpoints and returns. Only the main thread can install signal
  handlers."""
  got = []
  if threading.current_thread() is not threading.main_thread():
    yield lambda: False
    return
  previous = signal.signal(signal.SIGTERM, lambda *_: got.append(True))
  try:
    yield lambda: bool(got)
  finally:
    # None: the old handler was not set from Python; it cannot be restored, the default can.
    signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def train(config: ml_collections.ConfigDict, workdir: str, *, quiet: bool = False,
          dataset: data_lib.Dataset | None = None) -> Any:
  """Trains `config` in `workdir`, resuming from its latest good checkpoint if any.

  Writes `config.json`, `metrics.jsonl`, TensorBoard events under `tb/`, sample grids under
  `samples/`, `loss_curve.png` and Orbax checkpoints under `checkpoints/`. Returns the
  final state (replicated over the mesh). `dataset` replaces `config.dataset`'s train split.
  On SIGTERM (to any process of a multi-process run) it checkpoints the epoch in progress's
  end and returns early (an epoch rolled back returns at once); on NaN/Inf it follows
  `config.nan_policy`, never checkpointing a bad state.
  """
  config_lib.validate(config)
  multi = distributed.initialize(config)  # No-op unless config.distributed.
  writes = distributed.is_writer()        # Only process 0 writes files.
  os.makedirs(workdir, exist_ok=True)

  dataset = load_train_split(config) if dataset is None else dataset
  validate_dataset(dataset, config.batch_size)
  setup = build(config, dataset.images)
  if multi:  # Each process keeps its block; the split is one array sharded over 'data'.
    block = distributed.process_block(len(dataset.labels))
    images, labels = distributed.global_dataset(dataset.images[block], dataset.labels[block],
                                                setup.mesh)
  else:
    images, labels = parallel.to_device_dataset(dataset.images, dataset.labels, setup.mesh)
  steps_per_epoch = config_lib.steps_per_epoch(config, int(labels.shape[0]))

  ckpt = checkpointer_for(workdir, config)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  writers = []
  if writes:
    writers.append(JsonlWriter(metrics_path))
  writer = MultiWriter(writers)
  bar = None
  try:
    state, epoch = _restore_or_init(setup, ckpt, steps_per_epoch)
    if writes:  # Only now: a config its checkpoints do not fit must not replace the saved one.
      write_atomic(os.path.join(workdir, "config.json"), config_lib.to_json(config))
      writer.purge(epoch * steps_per_epoch + 1)  # metrics.jsonl past the restored epoch
      if config.tensorboard:  # Hides what a stopped run logged after the restored epoch.
        writer.writers.append(TensorboardWriter(os.path.join(workdir, "tb"),
                                                purge_step=epoch * steps_per_epoch + 1))
    epoch_fn = make_epoch_fn(setup, config.debug_nan_step, multi)
    sample_fn = jax.jit(setup.task.sample, static_argnums=2)
    grid_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), GRID_KEY_TAG)
    if config.progress_bar and not quiet and writes:
      from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel
      bar = tqdm(desc=f"{config.model} on {config.dataset}", unit="epoch", initial=epoch,
                 total=config.epochs)
    rollbacks = 0
    with _sigterm_flag() as preempted:
      while epoch < config.epochs:
        state, metrics = epoch_fn(state, images, labels)
        metrics, record = guard_lib.split_record(distributed.to_host(metrics))
        failure = _guard_failure(record, metrics, state, epoch + 1, ckpt,
                                 config.nan_check)
        if failure is not None:
          if config.nan_policy != "rollback" or rollbacks >= config.nan_max_rollbacks:
            raise failure
          rollbacks += 1
          logging.warning("genjax: %s Rolling back (%d/%d).", failure, rollbacks,
                          config.nan_max_rollbacks)
          ckpt.wait()
          state, epoch = _restore_or_init(setup, ckpt, steps_per_epoch)
          if writes:  # Forget the undone epochs' metrics, in TensorBoard too.
            writer.purge(epoch * steps_per_epoch + 1)
          if bar is not None:  # Back to the restored epoch: undone epochs no longer count.
            bar.n = epoch
            bar.refresh()
          epoch_fn = make_epoch_fn(setup, -1, multi)  # The injected fault is transient.
          if distributed.any_process(preempted()):  # The restored checkpoint is the latest.
            logging.warning("genjax: SIGTERM; the bad epoch left nothing new to save, exiting "
                            "(a new run resumes at epoch %d from %s).", epoch, ckpt.directory)
            break
          continue
        epoch += 1
        scalars = {k: float(np.mean(v)) for k, v in metrics.items()}
        ckpt.check_best_metric(scalars)  # A misspelt name fails after epoch 1, not at a save.
        step = epoch * steps_per_epoch
        writer.write(step, {"epoch": epoch, **scalars})
        if bar is not None:
          bar.update(1)
          bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items() if k.endswith("loss")})
        # Read once: a signal between save and exit must not skip the save. Every process
        # stops together: one stopping alone would leave the others waiting in collectives.
        stop = distributed.any_process(preempted())
        last = epoch == config.epochs or stop
        if epoch % config.sample_every == 0 or last:
          # Every process runs the sampler (it spans all devices); process 0 saves the grid.
          grid = distributed.to_host(sample_fn(state, grid_key, config.num_grid, None))
          if writes:
            _save_grid(grid, os.path.join(workdir, "samples", f"epoch_{epoch:04d}.png"))
        if epoch % config.checkpoint_every == 0 or last:
          ckpt.save(step, state, meta={"epoch": epoch, "steps_per_epoch": steps_per_epoch,
                                       "prng_impl": config.prng_impl}, metrics=scalars)
        if stop and epoch < config.epochs:
          logging.warning("genjax: SIGTERM; checkpointed epoch %d in %s, exiting. Run again "
                          "to resume.", epoch, ckpt.directory)
          break
    ckpt.wait()
  finally:
    if bar is not None:
      bar.close()
    writer.close()
    ckpt.close()
  if not writes:
    return state
  records = read_jsonl(metrics_path)
  loss_keys = sorted({k for r in records for k in r if k.endswith("loss")})
  pictures.save_curves(records, loss_keys, os.path.join(workdir, "loss_curve.png"),
                       title=f"{config.model} on {config.dataset}")
  return state


def load_trained(workdir: str) -> tuple[ml_collections.ConfigDict, Setup, Any]:
  """(config, setup, state) of the latest checkpoint in a work directory."""
  config = config_lib.load_workdir_config(workdir)
  example = np.zeros((1,) + data_lib.IMAGE_SHAPE, np.uint8)
  setup = build(config, example, training=False)  # Read on this machine's devices.
  ckpt = checkpointer_for(workdir, config, reader=True)
  try:
    state, _ = _restore_latest(setup, ckpt)
  finally:
    ckpt.close()
  return config, setup, state
