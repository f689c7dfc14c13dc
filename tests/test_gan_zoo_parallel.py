"""The extended GAN step under shard_map (per-device code, pmean/psum), in a subprocess with
fake CPU devices set before jax is imported."""
from __future__ import annotations

import textwrap

from tests.conftest import run_python

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from genjax.train import parallel
    from genjax.train.task import get_task
    from tests.gan_zoo_helpers import tiny_config, toy_batches
    c = tiny_config(model="cgan", spectral_norm=True, ada=True, ada_interval=1,
                    ada_kimg=1.0, ada_p_init=0.5)
    task = get_task(c)
    mesh = parallel.make_mesh(2)
    data = toy_batches(3)
    images = np.asarray(np.round((np.asarray(data["image"]).reshape(-1, 28, 28, 1) + 1)
                                 * 127.5), np.uint8)
    labels = np.asarray(data["label"]).reshape(-1)
    # Jitted as in the loop: op by op, this init alone compiled for ~25 s.
    init = jax.jit(task.init)
    state = parallel.put_replicated(init(jax.random.PRNGKey(0),
                                         jax.tree.map(lambda a: a[0], data)), mesh)
    epoch = parallel.make_epoch(task, mesh, "shard_map", c.batch_size)
    state, m = epoch(state, *parallel.to_device_dataset(images, labels, mesh))
    m = jax.device_get(m)
    assert all(np.all(np.isfinite(v)) for v in m.values()), m
    # r_t is the psum over both devices' real logits: a multiple of 1/batch.
    assert np.allclose(np.round(m["ada_r_t"] * c.batch_size), m["ada_r_t"] * c.batch_size)
    assert float(state.ada.p) != 0.5, state.ada  # The controller moved p.
    print("OK")
""")


def test_stabilised_conditional_step_runs_per_device_with_psum_and_pmean():
  out = run_python(SCRIPT, devices=2, timeout=900, check=False)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]
