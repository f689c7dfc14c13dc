"""Benchmark genjax against the PyTorch tutorial baselines, side by side in one process.

  GENJAX_DATA_DIR=... python experiments/bench.py --config=experiments/configs/mlp_gan.py:mnist \
      --batch_sizes=64,1024 --out=runs/bench
  # steps/s of DCGAN / VAE / PixelCNN beside their resident-data PyTorch equivalent
  # (the config's model picks its baselines), first 50 batches:
  GENJAX_DATA_DIR=... python experiments/bench.py \
      --config=experiments/configs/dcgan.py:mnist --steps=50
  # any config's step without baselines:
  python experiments/bench.py --config=experiments/configs/<x>.py --steps=50 --baselines=

Prints a markdown table; writes bench.md and bench.json (rows + device, the baselines' torch
device, versions, date, load) to --out, and rows.jsonl there as the rows come (the
environment, then one row a line: what a run cut off by a time limit had measured). The
PyTorch baselines need torch (the `bench` extra) and are skipped with a message when it is
absent. Baselines per model
(experiments/benchmarks/registry.py): mlp_gan -> torch_tutorial, torch_resident,
torch_resident_tuned; dcgan -> torch_dcgan; vae_mlp / vae_conv -> torch_vae_mlp /
torch_vae_conv; pixelcnn -> torch_pixelcnn. A baseline of another model, or of a config that
trains its model otherwise than the baseline (another loss, a penalty, a moving average), is
refused.
"""
import json
import os

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from genjax import bench
from genjax.train import loop

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_BATCH = flags.DEFINE_list("batch_sizes", None, "genjax batch sizes (default: the "
                           "config's batch_size).")
_DTYPES = flags.DEFINE_list("dtypes", ["float32"], "Compute dtypes: float32, bfloat16.")
_BASELINES = flags.DEFINE_list("baselines", None,
                               "PyTorch baselines (default: all of the config's model, see "
                               "experiments/benchmarks/registry.py); empty for none.")
_BASE_BATCH = flags.DEFINE_list("baseline_batch_sizes", None,
                                "Baseline batch sizes (default: --batch_sizes).")
_STEPS = flags.DEFINE_integer("steps", 0, "Time only the first N batches (0: whole epochs).")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Timed genjax epochs after the warm-up.")
_ROUNDS = flags.DEFINE_integer("rounds", 1, "Run every row this many times, interleaved, "
                               "and report each row's median round.")
_BASELINES_FIRST = flags.DEFINE_bool("baselines_first", False, "Time the baselines before the "
                                     "genjax rows (a run cut off by a time limit among many "
                                     "genjax rows then keeps them in rows.jsonl).")
_WARMUP = flags.DEFINE_bool("warmup", True, "Run one untimed genjax epoch after compiling.")
_NAN_POLICIES = flags.DEFINE_list("nan_policies", [], "config.nan_policy values to time, one "
                                  "genjax row each (default: the config's, i.e. the loop's "
                                  "NaN/Inf-guarded epoch); 'off' drops the guard.")
_NAN_CHECKS = flags.DEFINE_list("nan_checks", [], "config.nan_check values to time for each "
                                "guarded policy ('parameters', 'metrics'; default: the "
                                "config's).")
_VARIANTS = flags.DEFINE_list("variants", [], "Config overrides timed as extra genjax rows "
                              "after the config's own, each 'key=value;key=value', e.g. "
                              "d_joint_batch=True.")
_TORCH_DEVICE = flags.DEFINE_string("torch_device", "", "Baseline device (default: cuda if "
                                    "available, else cpu).")
_THREADS = flags.DEFINE_list("torch_threads", ["0"], "Baseline intra-op thread counts, each a "
                             "separate row ('0': torch's default).")
_PROFILE = flags.DEFINE_string("profile_dir", "", "If set, only trace one epoch (first "
                               "--steps batches, default 20) of the config with jax.profiler "
                               "there and print the time per XLA op.")
_OUT = flags.DEFINE_string("out", "", "Folder for bench.md and bench.json.")
flags.mark_flags_as_required(["config"])


def _baselines(config, names, device, threads):
  """({row name: fn(images, *, batch_size, max_steps)}, the device they run on, e.g.
  'cuda (NVIDIA H200)', or None without baselines); names None: the model's defaults."""
  if names is not None and not names:  # --baselines= : none
    return {}, None
  # pylint: disable-next=import-outside-toplevel
  from experiments.benchmarks import registry, torch_tutorial
  try:
    chosen = registry.select(config, names)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if not chosen:
    print(f"No PyTorch baseline for model {config.model!r}: genjax rows only.")
    return {}, None
  if not torch_tutorial.available():
    print("torch is not installed: skipping the PyTorch baselines "
          "(pip install 'genjax[bench]').")
    return {}, None
  import torch  # pylint: disable=import-outside-toplevel
  if not device:
    device = "cuda" if torch.cuda.is_available() else "cpu"
  where = device
  if device.startswith("cuda"):
    where += f" ({torch.cuda.get_device_name(torch.device(device))})"
  if jax.devices()[0].platform != "cpu" and not device.startswith("cuda"):
    print(f"Warning: genjax runs on {jax.devices()[0].platform} but the PyTorch baselines on "
          f"{device} (torch {torch.__version__}; torch.cuda.is_available() is "
          f"{torch.cuda.is_available()}): their ratios compare devices, not implementations.")

  def bind(fn, t):
    fn = torch_tutorial.with_threads(fn, t)
    return lambda images, **kw: fn(images, device=device, **kw)

  return {n + (f"_{t}thr" if t else ""): bind(fn, t)
          for n, fn in chosen.items() for t in threads}, where


def _row_log(out_dir, env):
  """Starts out_dir/rows.jsonl with `env`; returns fn(row) appending one row a line, so a run
  cut off by a time limit keeps the rows it had measured."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "rows.jsonl")
  with open(path, "w") as f:
    f.write(json.dumps({"environment": env}) + "\n")

  def keep_row(row):
    with open(path, "a") as f:
      f.write(json.dumps(row) + "\n")
  return keep_row


def profile_markdown(c, out: dict) -> str:
  """`profile.profile_epoch`'s result for config `c` as markdown: the ops by summed time, then
  the device's lines (kernels per step, overlap, busy share of the span)."""
  header = (f"{bench.device_description()}; config {c.model}, batch {c.batch_size}, "
            f"{c.compute_dtype}, d_joint_batch {c.d_joint_batch}, g_joint_batch "
            f"{c.g_joint_batch}, xla_options {c.xla_options!r}; {out['steps']} steps traced; "
            f"trace {out['trace']}; op time {out['total_us'] / 1e6:.2f} s (summed over "
            "threads)")
  lines = [header, "", "| op | s | share |", "|---|---|---|"]
  lines += [f"| {name} | {us / 1e6:.3f} | {share:.1%} |" for name, us, share in out["ops"]]
  if out["timeline"]:
    lines += ["", ("| device line | events | per step | busy ms | active ms | span ms | "
                   "busy / active | active / span |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['line']} | {r['events']} | {r['events'] / out['steps']:.1f} | "
              f"{r['busy_us'] / 1e3:.2f} | {r['active_us'] / 1e3:.2f} | "
              f"{r['span_us'] / 1e3:.2f} | {r['busy_us'] / max(r['active_us'], 1e-9):.2f} | "
              f"{r['active_us'] / max(r['span_us'], 1e-9):.2f} |" for r in out["timeline"]]
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if not _PROFILE.value:  # Refuse wrong baselines before loading any data.
    names = None if _BASELINES.value is None else [b for b in _BASELINES.value if b]
    baselines, torch_device = _baselines(config, names, _TORCH_DEVICE.value,
                                         [int(t) for t in _THREADS.value])
  dataset = loop.load_train_split(config)
  if _PROFILE.value:
    from genjax.bench import profile  # pylint: disable=import-outside-toplevel
    out = profile.profile_epoch(config, dataset.images, dataset.labels, _PROFILE.value,
                                steps=_STEPS.value or 20)
    md = profile_markdown(config, out)
    print(md)
    if _OUT.value:
      os.makedirs(_OUT.value, exist_ok=True)
      with open(os.path.join(_OUT.value, "profile.md"), "w") as f:
        f.write(md)
    return
  env = bench.environment()
  env["torch_device"] = torch_device  # Where the baselines ran (None: no baselines).
  print(f"{env['device']}, load average before: {env['load_average_1_5_15']}", flush=True)
  keep_row = _row_log(_OUT.value, env) if _OUT.value else lambda _: None
  rows = bench.run_suite(
      config, dataset.images, dataset.labels,
      batch_sizes=[int(b) for b in _BATCH.value or [config.batch_size]],
      dtypes=_DTYPES.value, baselines=baselines,
      baseline_batch_sizes=[int(b) for b in _BASE_BATCH.value] if _BASE_BATCH.value else None,
      steps=_STEPS.value, repeats=_REPEATS.value, warmup=_WARMUP.value,
      nan_policies=_NAN_POLICIES.value, nan_checks=_NAN_CHECKS.value,
      variants=_VARIANTS.value, rounds=_ROUNDS.value, baselines_first=_BASELINES_FIRST.value,
      log=lambda m: print(m, flush=True), on_row=keep_row)
  rows = bench.add_ratios(rows, list(baselines))
  env_after = bench.environment()
  env["load_average_after"] = env_after["load_average_1_5_15"]
  env["fp32_matmul_precision"] = env_after["fp32_matmul_precision"]  # torch is loaded now
  md = bench.to_markdown(rows, env)
  print(md)
  if _OUT.value:
    with open(os.path.join(_OUT.value, "bench.md"), "w") as f:
      f.write(md)
    with open(os.path.join(_OUT.value, "bench.json"), "w") as f:
      f.write(bench.to_json(rows, env, dataset=config.dataset, steps=_STEPS.value))


if __name__ == "__main__":
  app.run(main)
