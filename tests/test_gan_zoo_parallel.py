"""The extended GAN step under shard_map (per-device code, pmean/psum), in a subprocess with
fake CPU devices set before jax is imported."""
from __future__ import annotations

import json
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


BATCH_NORM_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from genjax.train import parallel
    from genjax.train.task import get_task
    from tests.gan_zoo_helpers import tiny_config, toy_batches
    task = get_task(tiny_config(model="dcgan"))  # BN in G, dropout 0, no ADA: nothing per device.
    batch = jax.tree.map(lambda a: a[0], toy_batches(1))
    state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
    one, m1 = jax.jit(task.make_step(None))(state, batch)
    mesh = parallel.make_mesh(4)
    many, m4 = parallel.make_single_step(task, mesh, "shard_map")(
        parallel.put_replicated(state, mesh), batch)
    diffs = {jax.tree_util.keystr(path): float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(jax.device_get(one)),
                                     jax.tree.leaves(jax.device_get(many)))}
    diffs.update({k: abs(float(m1[k]) - float(m4[k])) for k in m1})
    print(json.dumps(diffs))
""")
# Biases feeding a batch norm: their exact gradient is 0 (BN subtracts the mean), so Adam's
# first step turns float round-off into +-lr. Their gradients are compared through g_opt.
PRE_BN_BIASES = {f".g_params['params']['{layer}']['bias']"
                 for layer in ("Dense_0", "ConvTranspose_0", "ConvTranspose_1")}


def test_shard_map_batch_norm_uses_the_global_batch_statistics():
  """DCGAN's G has batch norm: under shard_map on 4 devices (2 images each) it must normalise
  with the batch of 8's statistics, so the step equals the single-device one (before the fix:
  losses off by 3e-3, running variances by 1e-3)."""
  out = run_python(BATCH_NORM_SCRIPT, devices=4, timeout=900)
  diffs = json.loads(out.stdout.strip().splitlines()[-1])
  assert PRE_BN_BIASES <= set(diffs) and {"d_loss", "g_loss"} <= set(diffs), sorted(diffs)
  assert any("batch_stats" in k for k in diffs)
  worst = {k: v for k, v in diffs.items() if k not in PRE_BN_BIASES and v > 1e-5}
  assert not worst, worst


JOINT_G_SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from genjax.train import parallel
    from genjax.train.task import get_task
    from tests.gan_zoo_helpers import tiny_config, toy_batches
    batch = jax.tree.map(lambda a: a[0], toy_batches(1))
    def step(joint, mode):  # D without dropout: one device and two then draw the same.
      task = get_task(tiny_config(model="mlp_gan", lr_d=1e-3, lr_g=1e-3, g_joint_batch=joint))
      state = jax.jit(task.init)(jax.random.PRNGKey(0), batch)
      if mode is None:
        return jax.device_get(jax.jit(task.make_step(None))(state, batch))
      mesh = parallel.make_mesh(2)
      return jax.device_get(parallel.make_single_step(task, mesh, mode)(
          parallel.put_replicated(state, mesh), batch))
    plain = step(False, None)
    print(json.dumps({str(mode): max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                                     for a, b in zip(jax.tree.leaves(plain),
                                                     jax.tree.leaves(step(True, mode))))
                      for mode in (None, "jit", "shard_map")}))
""")


def test_g_joint_batch_per_device_equals_the_two_pass_step():
  """G's joint pass and its pullback under the 2-device jit and shard_map steps (per-device
  parameters, pmean of G's gradient): one step equals the plain single-device one."""
  out = run_python(JOINT_G_SCRIPT, devices=2, timeout=900)
  diffs = json.loads(out.stdout.strip().splitlines()[-1])
  # A wrong half or a missing mean moves parameters by ~lr = 1e-3 (Adam's first step).
  assert set(diffs) == {"None", "jit", "shard_map"} and max(diffs.values()) < 1e-4, diffs
