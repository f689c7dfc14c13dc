"""Data parallelism on 8 fake CPU devices (in a subprocess: the device count is fixed when
jax starts) equals the single-device step on the same global batch."""
import json

import pytest

from tests.conftest import run_python

_COMPARE = r"""
import json, sys
import jax, numpy as np
from genjax import config as config_lib, data
from genjax.train import parallel
from genjax.train.loop import build

mode, dropout, dtype = sys.argv[1], float(sys.argv[2]), sys.argv[3]
assert jax.device_count() == 8, jax.devices()
ds = data.load("digits", "train")
batch_u8 = ds.images[:64]
out = {}
for n in (1, 8):
  config = config_lib.override(config_lib.base_config(), {
      "num_devices": n, "parallel": mode, "model_args.dropout_rate": dropout,
      "compute_dtype": dtype})
  setup = build(config, ds.images)
  init = jax.device_get(setup.init(jax.random.PRNGKey(0)))
  state = parallel.put_replicated(init, setup.mesh)
  batch = {"image": data.to_float(batch_u8), "label": ds.labels[:64]}
  step = parallel.make_single_step(setup.task, setup.mesh, mode)
  for _ in range(2):
    state, metrics = step(state, batch)
  if n == 8:
    shards = state.g_params["params"]["Dense_0"]["kernel"].addressable_shards
    out["devices"] = len({s.device for s in shards})
    out["replicas_equal"] = all(np.array_equal(shards[0].data, s.data) for s in shards)
  # How far the two steps moved G's and D's parameters (the less moved of the two).
  out[f"moved_{n}"] = min(max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                              for a, b in zip(jax.tree.leaves(getattr(init, f)),
                                              jax.tree.leaves(jax.device_get(getattr(state, f)))))
                          for f in ("g_params", "d_params"))
  out[n] = (jax.device_get(state), jax.device_get(metrics))
leaves1, leaves8 = jax.tree.leaves(out[1][0]), jax.tree.leaves(out[8][0])
diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
           for a, b in zip(leaves1, leaves8))
mdiff = max(abs(float(out[1][1][k]) - float(out[8][1][k])) for k in out[1][1])
print(json.dumps({"param_diff": diff, "metric_diff": mdiff, "devices": out["devices"],
                  "replicas_equal": out["replicas_equal"],
                  "moved": min(out["moved_1"], out["moved_8"])}))
"""


@pytest.mark.parametrize("mode,dropout,dtype", [("jit", 0.3, "float32"),
                                                ("shard_map", 0.0, "float32"),
                                                ("shard_map", 0.0, "bfloat16")])
def test_eight_devices_equal_one(mode, dropout, dtype):
  """'jit' mode draws every random number for the global batch, so it matches the
  single-device step with dropout on. 'shard_map' draws dropout masks per device, so it is
  compared with dropout off: that isolates its gradient pmean, which must be exact. In bf16
  it also runs the custom-VJP products with D's replicated kernels in G's objective."""
  proc = run_python(["-c", _COMPARE, mode, str(dropout), dtype], devices=8)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["devices"] == 8 and result["replicas_equal"]
  assert result["param_diff"] < 1e-5, result
  assert result["metric_diff"] < 1e-5, result
  assert result["moved"] > 1e-4, result  # Both steps trained: Adam moves a weight ~lr a step.
