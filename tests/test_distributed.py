"""2 local processes x 4 fake CPU devices (gloo collectives, coordinator on 127.0.0.1) give
the same step as 1 process x 8 devices, and the host loop trains, writes only on process 0,
saves Orbax checkpoints collectively and resumes past a damaged one.

Each configuration runs in its own subprocess because the device count and the distributed
runtime are fixed when jax starts.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 420

# argv: out_dir, devices_per_process, process_id, num_processes, port (0: single process)
WORKER = textwrap.dedent("""
    import os, sys
    out, ndev, pid, nproc, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        int(sys.argv[4]), int(sys.argv[5])
    import jax, numpy as np
    from genjax import config as config_lib
    from genjax.train import distributed, loop, parallel
    from experiments.configs.mlp_gan import get_config

    c = config_lib.override(get_config("smoke"), {"batch_size": 16, "tensorboard": False})
    if port:
      c = config_lib.override(c, {"distributed": True, "num_processes": nproc,
                                  "process_id": pid,
                                  "coordinator_address": f"127.0.0.1:{port}"})
    assert distributed.initialize(c) == bool(port)
    assert jax.device_count() == 8 and jax.local_device_count() == ndev
    assert jax.process_count() == nproc

    # One step on a fixed global batch; each process contributes only its rows.
    rng = np.random.RandomState(0)
    batch = {"image": rng.uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32),
             "label": rng.randint(0, 10, 16).astype(np.int32)}
    setup = loop.build(c, np.zeros((1, 28, 28, 1), np.uint8))
    mesh = setup.mesh
    rows = distributed.process_block(16)
    local = {k: v[rows] for k, v in batch.items()}
    gbatch = {k: jax.make_array_from_process_local_data(parallel.batch_sharded(mesh), v)
              for k, v in local.items()}
    state = parallel.put_replicated(setup.init(jax.random.PRNGKey(0)), mesh)
    step = parallel.make_single_step(setup.task, mesh, "jit")
    for _ in range(2):
      state, metrics = step(state, gbatch)
    params = distributed.to_host((state.g_params, state.d_params))
    if distributed.is_writer():
      leaves = jax.tree.leaves(params)
      np.savez(os.path.join(out, "step.npz"), *leaves)

    if port:  # The host loop: sharded data, collective checkpoint, process-0-only files.
      # 320 balanced images: 5 steps an epoch (each step's gloo all-reduce is slow on CPU).
      c = config_lib.override(c, {"epochs": 2, "batch_size": 64, "checkpoint_every": 1,
                                  "num_train": 320})
      run = os.path.join(out, "run")
      loop.train(c, run, quiet=True)
      # Damage the latest step; the resume falls back to epoch 1, process 0 quarantines the
      # step and every process saves epoch 2 again at the same step number.
      from genjax.train.loop import checkpointer_for
      from jax.experimental import multihost_utils
      with checkpointer_for(run, c) as ck:
        latest = ck.latest_step()
      if pid == 0:
        os.remove(os.path.join(run, "checkpoints", str(latest), "meta", "metadata"))
      multihost_utils.sync_global_devices("damaged")
      loop.train(config_lib.override(c, {"epochs": 3}), run, quiet=True)
    print("WORKER_OK", pid)
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(out, ndev, pid, nproc, port, worker=WORKER):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags(ndev)}
  return subprocess.Popen([sys.executable, "-c", worker, str(out), str(ndev), str(pid),
                           str(nproc), str(port)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(procs, timeout=TIMEOUT_S):
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail("distributed worker timed out")
  for p, o in zip(procs, outs, strict=True):
    assert p.returncode == 0 and "WORKER_OK" in o, o[-4000:]


def _load(path):
  with np.load(path) as z:
    return [z[f"arr_{i}"] for i in range(len(z.files))]


def test_two_processes_match_one_process_and_train(tmp_path):
  single, multi = tmp_path / "single", tmp_path / "multi"
  single.mkdir()
  multi.mkdir()
  port = _free_port()
  procs = [_launch(single, 8, 0, 1, 0)] + [_launch(multi, 4, i, 2, port) for i in range(2)]
  _finish(procs)

  a, b = _load(single / "step.npz"), _load(multi / "step.npz")
  assert len(a) == len(b) == 16  # G and D: 4 dense layers each, kernel + bias.
  for x, y in zip(a, b, strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)

  run = multi / "run"
  records = [json.loads(line) for line in open(run / "metrics.jsonl")]
  assert [r["epoch"] for r in records] == [1, 2, 3]  # One writer; epoch 2 once, after resume.
  assert all(np.isfinite(r["g_loss"]) for r in records)
  assert (run / "samples" / "epoch_0003.png").exists()
  spe = records[0]["step"]
  assert os.listdir(str(run) + "/checkpoints_quarantine") == [str(2 * spe)]
  assert sorted(int(s) for s in os.listdir(run / "checkpoints") if s.isdigit()) == [
      spe, 2 * spe, 3 * spe]


# argv as WORKER's. Process 1 alone gets a SIGTERM in epoch 1 (of 3; no checkpoint is due).
SIGTERM_WORKER = textwrap.dedent("""
    import json, os, signal, sys
    out, ndev, pid, nproc, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        int(sys.argv[4]), int(sys.argv[5])
    import jax, numpy as np
    from experiments import fault_injection as fi
    from genjax.train import distributed, loop, parallel

    c = fi.make_config(0, epochs=3, checkpoint_every=10, distributed=True,
                       num_processes=nproc, process_id=pid,
                       coordinator_address=f"127.0.0.1:{port}")
    assert distributed.initialize(c) and jax.process_count() == nproc
    errors = []
    try:  # A mesh over a part of the devices would leave a process without its data.
      parallel.make_mesh(1)
    except ValueError as e:
      errors.append(str(e))
    mesh = parallel.make_mesh(0)
    split = jax.make_array_from_process_local_data(parallel.batch_sharded(mesh),
                                                   np.full(2, pid, np.float32))
    try:  # Each process holds only its part: no value to return.
      distributed.to_host(split)
    except ValueError as e:
      errors.append(str(e))
    json.dump(errors, open(os.path.join(out, f"errors_{pid}.json"), "w"))

    if pid == 1:
      reads, to_host = [], distributed.to_host
      def signalling_to_host(tree):
        reads.append(1)
        if len(reads) == 1:
          os.kill(os.getpid(), signal.SIGTERM)
        return to_host(tree)
      distributed.to_host = signalling_to_host
    loop.train(c, os.path.join(out, "run"), quiet=True, dataset=fi.subset_dataset())
    print("WORKER_OK", pid)
""")


def test_sigterm_to_one_process_stops_all_and_bad_input_is_named(tmp_path):
  """Process 1 stopping alone (the old loop) left process 0 in epoch 2's collectives and
  process 1 in a save of its own: both hung. Now every process checkpoints epoch 1 and
  returns."""
  port = _free_port()
  _finish([_launch(tmp_path, 1, i, 2, port, SIGTERM_WORKER) for i in range(2)], timeout=240)
  for pid in range(2):
    mesh_error, host_error = json.load(open(tmp_path / f"errors_{pid}.json"))
    assert "config.num_devices=1: a multi-process run's mesh spans every" in mesh_error
    assert "to_host reads replicated arrays; this one, shape (4,)" in host_error
  records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert [r["epoch"] for r in records] == [1]
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [str(records[0]["step"])]
