"""Multi-process data parallelism on JAX's own multi-controller runtime.

Every process runs the same program, e.g. on one machine (process_id 0 and 1):

  python experiments/train.py --config=experiments/configs/mlp_gan.py:mnist --workdir=runs/d \
      --config.distributed=True --config.coordinator_address=127.0.0.1:12345 \
      --config.num_processes=2 --config.process_id=0

`initialize` connects it to the others through `jax.distributed.initialize`; from then on
`jax.devices()` lists every process's devices and `parallel.make_mesh` builds one global
('data',) mesh over them. Each process keeps only its contiguous block of the training
split (`process_block`) and contributes it as its part of a global array sharded over
'data' (`global_dataset`), so no device ever holds the whole split.

The single-process epoch (`parallel.make_epoch`) gathers batches from a replicated split;
here the split is sharded, so `make_sharded_epoch` shuffles and gathers per device: device d
draws a permutation of its own shard from `fold_in(key, d)` and contributes B/N examples to
every global batch. The step itself is `parallel.distribute`'s, unchanged, so a given global
batch gives the same update on 2 processes x 4 devices as on 1 process x 8 devices.

Only process 0 writes files (`is_writer`); Orbax checkpoints are saved by every process
together (each writes the shards it holds). Values that live on every process's devices are
read back with `to_host`.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from genjax.data import to_float
from genjax.train import parallel
from genjax.train.parallel import AXIS


def initialize(config) -> bool:
  """Joins the multi-process run when `config.distributed`; returns whether it did.

  Empty / 0 / -1 values of `coordinator_address`, `num_processes` and `process_id` let JAX
  detect them (SLURM, Open MPI, Cloud TPU); set all three on a plain machine.
  """
  if not config.distributed:
    return False
  if jax.distributed.is_initialized():
    return True
  if config.cpu_collectives:
    # CPU devices need a collectives library to all-reduce across processes; must be set
    # before the backend starts.
    jax.config.update("jax_cpu_collectives_implementation", config.cpu_collectives)
  jax.distributed.initialize(
      coordinator_address=config.coordinator_address or None,
      num_processes=config.num_processes or None,
      process_id=None if config.process_id < 0 else config.process_id)
  return True


def is_writer() -> bool:
  """Whether this process writes logs, pictures and config files (process 0 only)."""
  return jax.process_index() == 0


def process_block(num_examples: int, process_index: int | None = None,
                  process_count: int | None = None) -> slice:
  """The contiguous block of example indices that `process_index` keeps. Blocks have equal
  size (the remainder of `num_examples / process_count` is dropped) because every process
  contributes the same-shaped part of one global array."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  per = num_examples // count
  if per < 1:
    raise ValueError(f"{num_examples} examples cannot be split over {count} processes.")
  return slice(index * per, (index + 1) * per)


def global_dataset(images: np.ndarray, labels: np.ndarray, mesh) -> tuple[jax.Array, ...]:
  """This process's block (uint8 [n,H,W,C], int [n]) as its part of global arrays
  [n * processes, ...] sharded over 'data'. The block is cut so each local device gets an
  equal share."""
  local_devices = mesh.local_mesh.shape[AXIS]
  n = len(labels) - len(labels) % local_devices
  sharding = parallel.batch_sharded(mesh)
  return (jax.make_array_from_process_local_data(sharding, np.asarray(images[:n])),
          jax.make_array_from_process_local_data(sharding, np.asarray(labels[:n], np.int32)))


def make_sharded_epoch(task, mesh, mode: str, batch_size: int, *, guard: str | None = None,
                       nan_step: int = -1, unroll: int = 1,
                       compiler_options: dict | None = None):
  """A jitted `epoch(state, images, labels) -> (state, metrics[steps])` for a split sharded
  over 'data' (from `global_dataset`); shuffled per device, the state donated; `guard`,
  `nan_step`, `unroll` and `compiler_options` as in `parallel.make_epoch`."""
  step = parallel.guarded_step(task, mesh, mode, nan_step)
  parallel.check_batch_size(batch_size, mesh)
  local_batch = batch_size // mesh.shape[AXIS]

  def local_index(key, step_count, shard):  # shard: [n_dev, H, W, C] -> [steps, B/N]
    key = jax.random.fold_in(key, jax.lax.axis_index(AXIS))
    return parallel.shuffled_batches(key, step_count, shard.shape[0], local_batch)

  index_fn = jax.shard_map(local_index, mesh=mesh, in_specs=(P(), P(), P(AXIS)),
                           out_specs=P(None, AXIS))
  gather = jax.shard_map(lambda x, y, i: (x[i], y[i]), mesh=mesh,
                         in_specs=(P(AXIS), P(AXIS), P(AXIS)), out_specs=(P(AXIS), P(AXIS)))

  def epoch(state, images, labels):
    index = index_fn(state.key, state.step, images)  # [steps, B], positions within shards

    def body(state, idx):  # idx: [B]
      x, y = gather(images, labels, idx)
      return step(state, {"image": to_float(x), "label": y})

    return parallel.scan_epoch(body, state, index, guard, unroll)

  rep, shard = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  return jax.jit(epoch, donate_argnums=0, in_shardings=(rep, shard, shard),
                 out_shardings=(rep, rep), compiler_options=compiler_options or None)


def to_host(tree: Any) -> Any:
  """NumPy copies of a pytree of replicated arrays, also when they span other processes'
  devices (where `jax.device_get` refuses): any local replica is the whole value. An array
  split over other processes' devices is an error: this process holds only its part."""
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if not x.sharding.is_fully_replicated:
        raise ValueError(f"to_host reads replicated arrays; this one, shape {x.shape}, is "
                         f"split over other processes' devices ({x.sharding}).")
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)
  return jax.tree.map(get, tree)


def any_process(flag: bool) -> bool:
  """Whether `flag` holds on any process; a collective that every process calls at the same
  point. A SIGTERM reaches the processes at different times: one process stopping on its own
  would leave the others waiting for it in the next epoch or save."""
  if jax.process_count() == 1:
    return bool(flag)
  gathered = multihost_utils.process_allgather(np.asarray(flag, np.int32))
  return bool(np.any(gathered))
