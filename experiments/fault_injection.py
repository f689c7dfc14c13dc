"""Fault injection: kill -9 during training and saving, SIGTERM, corrupted checkpoints.

Every trial trains the tiny `mlp_gan.py:smoke` config (a 256-image digits subset, 4 steps an
epoch) in a subprocess, hurts it, restarts it, and compares the final parameters with an
uninterrupted run of the same seed (np.array_equal on every leaf).

  PYTHONPATH=. python experiments/fault_injection.py --kill_trials=24 --corrupt_trials=24

Prints one JSON summary; `--child` is the subprocess entry point (one training run).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBSET = 256  # Digits images per epoch: 4 steps of 64.
OVERRIDES = {"epochs": 8, "checkpoint_every": 1, "keep_checkpoints": 2, "sample_every": 1000,
             "num_grid": 4, "tensorboard": False, "progress_bar": False}


# ----------------------------------------------------------------------------- the child
def make_config(seed: int, **extra):
  sys.path.insert(0, os.path.join(ROOT, "experiments", "configs"))
  import mlp_gan  # pylint: disable=import-outside-toplevel
  from genjax.config import override  # pylint: disable=import-outside-toplevel

  return override(mlp_gan.get_config("smoke"), {**OVERRIDES, "seed": seed, **extra})


def subset_dataset():
  from genjax import data  # pylint: disable=import-outside-toplevel

  d = data.load("digits", "train")
  return d._replace(images=d.images[:SUBSET], labels=d.labels[:SUBSET])


def child(args) -> None:
  from absl import logging  # pylint: disable=import-outside-toplevel

  logging.set_verbosity(logging.WARNING)
  from genjax import checkpoint  # pylint: disable=import-outside-toplevel
  from genjax.train import loop  # pylint: disable=import-outside-toplevel

  if args.kill_save_at:  # SIGKILL ourselves `kill_delay` seconds into the n-th save.
    calls, save = [0], checkpoint.Checkpointer.save

    def killing_save(self, *a, **k):
      calls[0] += 1
      if calls[0] == args.kill_save_at:
        threading.Timer(args.kill_delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
      return save(self, *a, **k)

    checkpoint.Checkpointer.save = killing_save
  extra = json.loads(args.overrides)
  loop.train(make_config(args.seed, **extra), args.workdir, quiet=True,
             dataset=subset_dataset())
  time.sleep(args.linger)  # Lets a save-kill timer land after the last save, too.
  print("CHILD_DONE", flush=True)


# ----------------------------------------------------------------------------- the parent
def child_env(cache_dir: str) -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  return env


def spawn(workdir, seed, cache_dir, *, overrides=None, kill_save_at=0, kill_delay=0.0,
          linger=0.0) -> subprocess.Popen:
  """Starts a child run; its output goes to `<workdir>.log` (a pipe nobody reads while the
  parent waits to kill could fill up and block the child)."""
  cmd = [sys.executable, os.path.abspath(__file__), "--child", "--workdir", workdir,
         "--seed", str(seed), "--overrides", json.dumps(overrides or {}),
         "--kill_save_at", str(kill_save_at), "--kill_delay", str(kill_delay),
         "--linger", str(linger)]
  log = open(workdir.rstrip("/") + ".log", "w")  # pylint: disable=consider-using-with
  proc = subprocess.Popen(cmd, env=child_env(cache_dir), stdout=log,
                          stderr=subprocess.STDOUT, text=True)
  proc.log_path = log.name
  log.close()  # The child holds its own copy of the descriptor.
  return proc


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
  proc.wait(timeout=timeout)
  with open(proc.log_path) as f:
    return proc.returncode, f.read()


def run_to_end(workdir, seed, cache_dir, **kw) -> str:
  code, out = finish(spawn(workdir, seed, cache_dir, **kw))
  if code != 0 or "CHILD_DONE" not in out:
    raise RuntimeError(f"child run in {workdir} failed (exit {code}):\n{out[-3000:]}")
  return out


def epochs_logged(workdir: str) -> int:
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      return sum(1 for line in f if line.strip())
  except FileNotFoundError:
    return 0


def ckpt_listing(workdir: str) -> list[str]:
  d = os.path.join(workdir, "checkpoints")
  return sorted(os.listdir(d)) if os.path.isdir(d) else []


def final_state(workdir: str, seed: int):
  """The latest checkpoint's state, restored into the config's abstract state."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from genjax.train import loop  # pylint: disable=import-outside-toplevel

  config = make_config(seed)
  setup = loop.build(config, np.zeros((1, 28, 28, 1), np.uint8))
  with loop.checkpointer_for(workdir, config) as ckpt:
    state, meta = ckpt.restore(setup.abstract_state)
  return state, meta


def same_params(a_dir: str, b_dir: str, seed: int, epochs: int = OVERRIDES["epochs"]
                ) -> bool:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  (a, ma), (b, mb) = final_state(a_dir, seed), final_state(b_dir, seed)
  return ma["epoch"] == mb["epoch"] == epochs and all(
      np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def reference(root: str, seed: int, cache_dir: str, refs: dict) -> str:
  if seed not in refs:
    wd = os.path.join(root, f"ref_{seed}")
    t = time.time()
    run_to_end(wd, seed, cache_dir)  # Resumes (a no-op) when it is already complete.
    refs[seed] = (wd, time.time() - t)
  return refs[seed][0]


def kill_trial(root: str, trial: int, seed: int, kind: str, cache_dir: str, refs: dict,
               rng: random.Random, save_delay_max: float = 0.15) -> dict:
  """kind: 'train' (SIGKILL at a random moment of training), 'save' / 'async_save'
  (SIGKILL a random delay into a random save) or 'sigterm' (graceful preemption)."""
  ref = reference(root, seed, cache_dir, refs)
  wd = os.path.join(root, f"trial_{trial}_{kind}_{seed}")
  overrides = {"async_checkpoint": True} if kind == "async_save" else {}
  info = {"trial": trial, "seed": seed, "kind": kind}
  if kind in ("save", "async_save"):
    at, delay = rng.randint(1, OVERRIDES["epochs"]), rng.uniform(0.0, save_delay_max)
    code, _ = finish(spawn(wd, seed, cache_dir, overrides=overrides, kill_save_at=at,
                           kill_delay=delay, linger=0.5))
    info.update(save=at, delay_s=round(delay, 3), delay_max_s=save_delay_max)
  else:
    proc = spawn(wd, seed, cache_dir, overrides=overrides)
    while epochs_logged(wd) < 1 and proc.poll() is None:  # Compiled, training.
      time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 2.0))
    proc.send_signal(signal.SIGKILL if kind == "train" else signal.SIGTERM)
    code, _ = finish(proc)
  left = ckpt_listing(wd)
  info.update(exit=code, epochs_at_kill=epochs_logged(wd), left=left,
              mid_run=epochs_logged(wd) < OVERRIDES["epochs"],
              mid_save=any(".orbax-checkpoint-tmp" in n for n in left))
  run_to_end(wd, seed, cache_dir, overrides=overrides)
  quarantine = os.path.join(wd, "checkpoints_quarantine")
  info["quarantined"] = sorted(os.listdir(quarantine)) if os.path.isdir(quarantine) else []
  info["survived"] = same_params(wd, ref, seed)
  return info


CORRUPTIONS = ("truncate", "garbage", "delete")
TARGETS = ("_CHECKPOINT_METADATA", "meta/metadata", "state/_METADATA", "state/manifest.ocdbt",
           "state/d/*", "*")


def corrupt(step_dir: str, mode: str, target: str, rng: random.Random) -> str:
  files = sorted(os.path.relpath(os.path.join(r, f), step_dir)
                 for r, _, fs in os.walk(step_dir) for f in fs)
  if target.endswith("*"):
    prefix = target[:-1]
    rel = rng.choice([f for f in files if f.startswith(prefix)])
  else:
    rel = target
  path = os.path.join(step_dir, rel)
  if mode == "delete":
    os.remove(path)
  elif mode == "truncate":
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)
  else:
    with open(path, "r+b") as f:
      size = os.path.getsize(path)
      f.seek(rng.randrange(max(size // 2, 1)))
      f.write(bytes(rng.randrange(256) for _ in range(max(size // 2, 8))))
  return rel


def restart_in_process(workdir: str, seed: int) -> str:
  """Resumes `workdir` in this process (no JAX start-up); returns the warnings logged."""
  import logging as py_logging  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  from genjax.train import loop  # pylint: disable=import-outside-toplevel

  lines = []
  handler = py_logging.Handler()
  handler.emit = lambda record: lines.append(record.getMessage())
  logging.get_absl_logger().addHandler(handler)
  try:
    loop.train(make_config(seed), workdir, quiet=True, dataset=subset_dataset())
  finally:
    logging.get_absl_logger().removeHandler(handler)
  return "\n".join(lines)


def corrupt_trial(root: str, trial: int, seed: int, mode: str, target: str, cache_dir: str,
                  refs: dict, rng: random.Random, in_process: bool = True) -> dict:
  """Damage the latest checkpoint of a finished run, restart it: it must either restore
  the intact bytes (SHA-256 verified) or report the step, quarantine it and redo its epoch
  from the previous one, ending equal to the reference."""
  ref = reference(root, seed, cache_dir, refs)
  wd = os.path.join(root, f"corrupt_{trial}_{seed}")
  shutil.copytree(ref, wd)
  latest = max(int(n) for n in ckpt_listing(wd) if n.isdigit())
  rel = corrupt(os.path.join(wd, "checkpoints", str(latest)), mode, target, rng)
  out = restart_in_process(wd, seed) if in_process else run_to_end(wd, seed, cache_dir)
  quarantine = os.path.join(wd, "checkpoints_quarantine")
  reported = str(latest) in (os.listdir(quarantine) if os.path.isdir(quarantine) else [])
  named = reported and f"checkpoints/{latest} is partial or damaged" in out
  return {"trial": trial, "seed": seed, "mode": mode, "file": rel, "step": latest,
          "fell_back": reported, "reported_by_name": named,
          "handled": same_params(wd, ref, seed) and reported == named}


def summarize(logs: list[str]) -> dict:
  """Totals over the trial lines that parallel runs printed."""
  kill, bad = [], []
  for path in logs:
    with open(path) as f:
      for line in f:
        if line.startswith("{\"trial\""):
          r = json.loads(line)
          (kill if "kind" in r else bad).append(r)
  by_kind = {}
  for r in kill:
    name = r["kind"]
    if r.get("delay_max_s", 0.15) != 0.15:
      name += f" (0-{round(r['delay_max_s'] * 1000)} ms)"
    k = by_kind.setdefault(name, {"trials": 0, "survived": 0, "mid_save": 0,
                                       "before_final_checkpoint": 0})
    k["trials"] += 1
    # Killed before the run's last checkpoint existed: work was really lost and redone.
    k["before_final_checkpoint"] += str(OVERRIDES["epochs"] * SUBSET // 64) not in r.get(
        "left", [str(OVERRIDES["epochs"] * SUBSET // 64)])
    k["survived"] += r["survived"]
    k["mid_save"] += r.get("mid_save", False)
  by_mode = {}
  for r in bad:
    m = by_mode.setdefault(r["mode"], {"trials": 0, "handled": 0, "fell_back": 0})
    m["trials"] += 1
    m["handled"] += r["handled"]
    m["fell_back"] += r["fell_back"]
  return {"kill_trials": len(kill), "kill_survived": sum(r["survived"] for r in kill),
          "kill_by_kind": by_kind, "corrupt_trials": len(bad),
          "corrupt_handled": sum(r["handled"] for r in bad), "corrupt_by_mode": by_mode,
          "failures": [r for r in kill + bad if not r.get("survived", r.get("handled"))]}


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--child", action="store_true")
  p.add_argument("--workdir", default="")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--overrides", default="{}")
  p.add_argument("--kill_save_at", type=int, default=0)
  p.add_argument("--kill_delay", type=float, default=0.0)
  p.add_argument("--linger", type=float, default=0.0)
  p.add_argument("--kill_trials", type=int, default=24)
  p.add_argument("--corrupt_trials", type=int, default=24)
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--first_trial", type=int, default=0, help="Offsets trial numbers and "
                 "the random stream, to split the trials over processes.")
  p.add_argument("--root", default="")
  p.add_argument("--kinds", default="train,save,async_save,train,save,sigterm",
                 help="Kill kinds, cycled over the trials.")
  p.add_argument("--save_delay_max", type=float, default=0.15,
                 help="A save kill lands uniformly in [0, this] seconds into the save.")
  p.add_argument("--out", default="")
  p.add_argument("--summarize", nargs="*", default=None,
                 help="Only merge the JSON trial lines of these logs into one summary.")
  args = p.parse_args()
  if args.child:
    return child(args)
  if args.summarize is not None:
    return print(json.dumps(summarize(args.summarize), indent=1))
  rng = random.Random(args.first_trial)
  root = args.root or tempfile.mkdtemp(prefix="genjax_faults_")
  cache_dir = os.path.join(root, "jax_cache")
  import jax  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel

  logging.set_verbosity(logging.WARNING)
  jax.config.update("jax_compilation_cache_dir", cache_dir)  # Shared with the children.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  refs, results = {}, {"kill": [], "corrupt": []}
  kinds = args.kinds.split(",")
  for i in range(args.first_trial, args.first_trial + args.kill_trials):
    try:
      r = kill_trial(root, i, i % args.seeds, kinds[i % len(kinds)], cache_dir, refs, rng,
                     args.save_delay_max)
    except Exception as e:  # A failed trial is a result, not the end of the experiment.
      r = {"trial": i, "kind": kinds[i % len(kinds)], "survived": False, "mid_run": False,
           "mid_save": False, "quarantined": [], "error": f"{type(e).__name__}: {e}"[-2000:]}
    print(json.dumps(r), flush=True)
    results["kill"].append(r)
  cases = [(m, t) for t in TARGETS for m in CORRUPTIONS]
  for i in range(args.corrupt_trials):
    mode, target = cases[i % len(cases)]
    try:
      r = corrupt_trial(root, i, i % args.seeds, mode, target, cache_dir, refs, rng)
    except Exception as e:
      r = {"trial": i, "mode": mode, "target": target, "handled": False, "fell_back": False,
           "error": f"{type(e).__name__}: {e}"[-2000:]}
    print(json.dumps(r), flush=True)
    results["corrupt"].append(r)
  summary = {
      "kill_trials": len(results["kill"]),
      "kill_survived": sum(r["survived"] for r in results["kill"]),
      "kill_mid_run": sum(r["mid_run"] for r in results["kill"]),
      "kill_mid_save": sum(r["mid_save"] for r in results["kill"]),
      "corrupt_trials": len(results["corrupt"]),
      "corrupt_handled": sum(r["handled"] for r in results["corrupt"]),
      "corrupt_fell_back": sum(r["fell_back"] for r in results["corrupt"]),
      "root": root}
  print(json.dumps(summary))
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"summary": summary, **results}, f, indent=1)


if __name__ == "__main__":
  main()
