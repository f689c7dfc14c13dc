"""Data parallelism over a ('data',) device mesh, one code path for 1 and N devices.

State and the device-resident dataset are replicated; each step's batch is split over the
'data' axis. Two ways to run a step on the mesh, chosen by `config.parallel`:
  * 'jit': the step is written for the global batch; a sharding constraint splits the batch
    and XLA's partitioner inserts the gradient all-reduce. Random draws are those of the
    global batch, so N devices compute the single-device step.
  * 'shard_map': the step runs per device on its batch shard and averages its gradients with
    `lax.pmean`. The GAN's z is the global batch's, sliced, and its batch norms average their
    statistics over the axis, so they normalise with the global batch's. Other draws are made
    per device from `fold_in(key, axis_index)`: dropout masks; in the GAN step ADA's
    augmentations and WGAN-GP's interpolation weights; in the likelihood tasks every draw
    (binarisation, the VAE's latent samples). Only these differ from the single-device step;
    without them the two agree to float round-off (which Adam's first step can scale up to
    lr where a gradient is zero in exact arithmetic, as for a bias feeding a batch norm).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from genjax.data import to_float
from genjax.train import guard as guard_lib

AXIS = "data"
SHUFFLE_TAG = 0x5EED  # Keeps the shuffling stream apart from the per-step stream.


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
  """A 1-d mesh over the first `num_devices` devices (0: all of them). In a multi-process
  run (genjax.train.distributed) `jax.devices()` holds every process's devices, so the mesh
  is global; in one process it is the local devices."""
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f"config.num_devices={n} but only {len(devices)} devices are present: "
                     f"{devices}.")
  if jax.process_count() > 1 and n != len(devices):
    raise ValueError(f"config.num_devices={n}: a multi-process run's mesh spans every "
                     f"process's devices ({len(devices)} over {jax.process_count()} "
                     "processes), each holding its block of the data; set num_devices=0.")
  return jax.make_mesh((n,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices[:n])


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def check_batch_size(batch_size: int, mesh) -> None:
  n = mesh.shape[AXIS]
  if batch_size % n:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {n} devices of the "
                     "mesh; choose a multiple or set config.num_devices.")


def distribute(task, mesh, mode: str):
  """The task's step as a function of (state, global batch) that runs over the mesh."""
  if mode == "shard_map":
    return jax.shard_map(task.make_step(AXIS), mesh=mesh, in_specs=(P(), P(AXIS)),
                         out_specs=(P(), P()))
  if mode != "jit":
    raise ValueError(f"Unknown parallel mode {mode!r}; use 'jit' or 'shard_map'.")
  step = task.make_step(None)

  def sharded_step(state, batch):
    batch = jax.lax.with_sharding_constraint(batch, batch_sharded(mesh))
    return step(state, batch)

  return sharded_step


def shuffled_batches(key: jax.Array, step: jax.Array, num_examples: int, batch_size: int
                     ) -> jax.Array:
  """Indices [steps, B] of one epoch, a fresh permutation keyed by the starting step."""
  steps = num_examples // batch_size
  perm = jax.random.permutation(
      jax.random.fold_in(jax.random.fold_in(key, SHUFFLE_TAG), step), num_examples)
  return perm[:steps * batch_size].reshape(steps, batch_size)


def scan_epoch(body, state, index, guard: str | None = None, unroll: int = 1):
  """`lax.scan` of `body(state, idx) -> (state, metrics)` over `index` [steps, B], `unroll`
  steps per loop iteration (multi-step fusion). With `guard` (one of `guard.CHECKS`, what
  each step reads; None: no guard), every step is NaN/Inf-checked on device
  (`genjax.train.guard`; the whole state once, at the end) and the metrics also hold the
  guard's record (`guard/bad_step`, `guard/bad_terms`, `guard/at_epoch_end`, scalars)."""
  if guard is None:
    return jax.lax.scan(body, state, index, unroll=unroll)
  (state, record), metrics = jax.lax.scan(guard_lib.guard_step(body, guard),
                                          (state, guard_lib.healthy()), index, unroll=unroll)
  record = guard_lib.check_epoch_end(record, metrics, state)
  return state, {**metrics, **guard_lib.as_metrics(record)}


def guarded_step(task, mesh, mode: str, nan_step: int):
  """The distributed step, its batch poisoned at global step `nan_step` >= 0 (a test hook)."""
  step = distribute(task, mesh, mode)
  return guard_lib.poison_batch(step, nan_step) if nan_step >= 0 else step


def make_epoch(task, mesh, mode: str, batch_size: int, *, guard: str | None = None,
               nan_step: int = -1, unroll: int = 1, compiler_options: dict | None = None):
  """A jitted `epoch(state, images_u8, labels) -> (state, metrics[steps])`: one `lax.scan`
  over the whole device-resident split, shuffled on device, the state donated; `guard`,
  `unroll` and `nan_step` as in `scan_epoch` and `guarded_step`; `compiler_options` go to
  jax.jit (XLA's options for this program only)."""
  step = guarded_step(task, mesh, mode, nan_step)
  check_batch_size(batch_size, mesh)

  def epoch(state, images, labels):
    index = shuffled_batches(state.key, state.step, images.shape[0], batch_size)

    def body(state, idx):  # idx: [B]
      return step(state, {"image": to_float(images[idx]), "label": labels[idx]})

    return scan_epoch(body, state, index, guard, unroll)

  rep = replicated(mesh)
  return jax.jit(epoch, donate_argnums=0, in_shardings=(rep, rep, rep),
                 out_shardings=(rep, rep), compiler_options=compiler_options or None)


def make_single_step(task, mesh, mode: str):
  """One jitted step on an already-float global batch; used by tests and benchmarks."""
  rep = replicated(mesh)
  return jax.jit(distribute(task, mesh, mode), in_shardings=(rep, batch_sharded(mesh)),
                 out_shardings=(rep, rep))


def put_replicated(tree, mesh):
  return jax.device_put(tree, replicated(mesh))


def to_device_dataset(images, labels, mesh):
  """The whole split onto every device, as uint8 (4x smaller than float32)."""
  return put_replicated((jnp.asarray(images), jnp.asarray(labels, jnp.int32)), mesh)
