"""The benchmark code path on CPU with tiny sizes: structure of rows, ratios and reports (no
timing assertions), the PyTorch baselines when torch is present, and bad input."""
import json

import numpy as np
import pytest

from experiments.benchmarks import torch_tutorial
from experiments.configs.mlp_gan import get_config
from genjax import bench
from genjax import config as config_lib
from genjax.data import load
from tests.conftest import run_python


@pytest.fixture(scope="module")
def digits():
  ds = load("digits", "train")
  return ds.images[:96], ds.labels[:96]


def test_time_epoch_separates_compile_and_counts_steps(digits):
  c = config_lib.override(get_config("smoke"), {"batch_size": 16})
  t = bench.time_epoch(c, *digits, repeats=2, steps=3)
  assert t.steps_per_epoch == 3 and t.batch_size == 16 and t.num_devices == 1
  assert len(t.epoch_s) == 2 and t.compile_s > 0 and t.warmup_s > 0
  d = t.as_dict()
  assert d["steps_per_s"] == pytest.approx(3 / d["median_epoch_s"])
  assert d["examples_per_s"] == pytest.approx(16 * d["steps_per_s"])
  with pytest.raises(ValueError, match="repeats"):
    bench.time_epoch(c, *digits, repeats=0)


def test_suite_rows_ratios_and_reports(digits):
  calls = []

  def fake_baseline(images, *, batch_size, max_steps):
    calls.append((len(images), batch_size, max_steps))
    return {"epoch_s": 2.0, "steps": max_steps}

  c = get_config("smoke")
  # steps=50 is capped at one epoch of whole batches: 96 // 32 = 3 (one compile only).
  rows = bench.run_suite(c, *digits, batch_sizes=(32,), dtypes=("bfloat16",),
                         baselines={"fake": fake_baseline}, steps=50, warmup=False)
  assert calls == [(96, 32, 50)]
  assert [(r["impl"], r["dtype"], r["steps"]) for r in rows] == [
      ("genjax", "bfloat16", 3), ("fake", "float32", 50)]
  assert rows[0]["nan_guard"]  # By default the loop's own, NaN/Inf-guarded epoch.
  assert rows[1]["steps_per_s"] == 25.0 and rows[1]["compile_s"] is None
  assert rows[0]["warmup_s"] is None and not rows[0]["full_epoch"]
  rows = bench.add_ratios(rows, ["fake"])
  assert rows[0]["x_fake"] == pytest.approx(rows[0]["steps_per_s"] / 25.0)
  assert "x_fake" not in rows[1]

  env = bench.environment()
  assert env["platform"] == "cpu" and env["versions"]["jax"] and env["date_utc"]
  md = bench.to_markdown(rows, env)
  assert md.count("\n| genjax |") == 1 and "x vs fake" in md and env["device"] in md
  doc = json.loads(bench.to_json(rows, env, note="tiny"))
  assert doc["note"] == "tiny" and len(doc["rows"]) == 2
  assert set(doc["environment"]) >= {"device", "date_utc", "versions", "load_average_1_5_15",
                                     "fp32_matmul_precision"}


def test_cost_analysis_reports_flops(digits):
  c = config_lib.override(get_config("smoke"), {"batch_size": 16})
  cost = bench.cost_analysis(c, digits[0][:32], digits[1][:32])
  # XLA counts the scanned body once: at least one step's matmuls (G and D, fwd + bwd).
  assert cost["flops"] > 6 * 16 * 1.4e6


@pytest.mark.skipif(not torch_tutorial.available(), reason="torch not installed (bench extra)")
def test_torch_baselines_run_tiny(digits):
  images = digits[0]
  for name, fn in torch_tutorial.BASELINES.items():
    out = torch_tutorial.with_threads(fn, 1)(images, batch_size=32, max_steps=2)
    assert out["steps"] == 2 and out["epoch_s"] > 0, name
  loader = torch_tutorial.make_tutorial_loader(images, batch_size=32)
  x, _ = next(iter(loader))
  # ToTensor + Normalize(0.5, 0.5): [B, 1, 28, 28] in [-1, 1], the genjax scaling.
  assert tuple(x.shape) == (32, 1, 28, 28)
  assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
  G, D, *_ = torch_tutorial.build()
  assert sum(p.numel() for p in G.parameters()) == 1_486_352
  assert sum(p.numel() for p in D.parameters()) == 1_460_225


@pytest.mark.skipif(not torch_tutorial.available(), reason="torch not installed (bench extra)")
def test_tuned_torch_step_makes_the_tutorials_updates(digits):
  """The tuned resident baseline drops only work whose results the tutorial throws away: from
  the same seed (the same z and dropout draws) both steps give the same parameters."""
  import torch  # pylint: disable=import-outside-toplevel

  x = torch.from_numpy(digits[0][:16].astype(np.float32) / 127.5 - 1.0).reshape(16, 784)
  params = []
  # pylint: disable-next=protected-access
  for step in (torch_tutorial._train_step, torch_tutorial._tuned_step):
    torch.manual_seed(0)
    G, D, G_opt, D_opt, criterion = torch_tutorial.build()
    losses = [step(torch, x, G, D, G_opt, D_opt, criterion, 100, "cpu") for _ in range(3)]
    params.append([p.detach().clone() for p in [*G.parameters(), *D.parameters()]])
    assert np.isfinite([float(v) for pair in losses for v in pair]).all()
  for a, b in zip(*params, strict=True):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_torch_loader_normalisation_matches_genjax(digits):
  pytest.importorskip("torch")
  from genjax.data import to_float
  images = digits[0][:4]
  ds = torch_tutorial.make_tutorial_loader(images, batch_size=4).dataset
  got = np.stack([ds[i][0].numpy()[0] for i in range(4)])
  np.testing.assert_allclose(got, to_float(images)[..., 0], atol=1e-6)


def test_suite_times_the_epoch_with_and_without_the_nan_guard(digits):
  rows = bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,),
                         nan_policies=("stop", "off"), nan_checks=("parameters", "metrics"),
                         steps=2, warmup=False)
  assert [(r["nan_guard"], r["steps"]) for r in rows] == [
      ("parameters", 2), ("metrics", 2), (False, 2)]
  with pytest.raises(ValueError, match="nan_policy"):
    bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,), nan_policies=("of",),
                    steps=2, warmup=False)
  with pytest.raises(ValueError, match="nan_check"):
    bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,), nan_checks=("params",),
                    steps=2, warmup=False)


def test_variants_add_rows_with_their_config_overrides(digits):
  assert bench.parse_variant("d_joint_batch=True; lr_d=1e-3;parallel=shard_map") == {
      "d_joint_batch": True, "lr_d": 1e-3, "parallel": "shard_map"}
  with pytest.raises(ValueError, match="expected 'key=value"):
    bench.parse_variant("d_joint_batch")
  seen = []
  rows = bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,), nan_policies=("off",),
                         variants=("d_joint_batch=True",), steps=2, warmup=False,
                         on_row=seen.append)
  assert [r["variant"] for r in rows] == ["", "d_joint_batch=True"]
  assert seen == rows  # Every row handed on as it was measured.
  md = bench.to_markdown(rows, bench.environment())
  assert "| variant |" in md and "| d_joint_batch=True |" in md
  with pytest.raises(KeyError, match="d_joint_batc"):  # An unknown key is named.
    bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,),
                    variants=("d_joint_batc=True",), steps=2, warmup=False)


@pytest.mark.parametrize("variant, match", [
    ("xla_options=xla_no_such_option=1", "xla_options.*XLA refused"),
    ("g_joint_batch=True;n_critic=2", "g_joint_batch"),
    ("batch_size=4096", "batch"),
])
def test_a_variant_refused_is_one_error_before_any_row_is_timed(digits, variant, match):
  """The last variant is refused by XLA or genjax: the run stops before the baselines and the
  rows before it spend their time (on an accelerator, minutes of a short lease)."""
  timed = []

  def baseline(images, *, batch_size, max_steps):
    timed.append("baseline")
    return {"epoch_s": 1.0, "steps": max_steps}

  with pytest.raises(ValueError, match=match):
    bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,), nan_policies=("off",),
                    baselines={"fake": baseline}, baselines_first=True,
                    variants=("d_joint_batch=True", variant), steps=2, warmup=False,
                    on_row=timed.append)
  assert timed == []


def test_rounds_interleave_the_rows_and_keep_each_rows_median_round(digits):
  calls = []

  def fake(name, times):
    def fn(images, *, batch_size, max_steps):
      calls.append(name)
      return {"epoch_s": times[sum(c == name for c in calls) - 1], "steps": 10}
    return fn

  rows = bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,), dtypes=(),
                         baselines={"a": fake("a", [3.0, 1.0, 2.0]),
                                    "b": fake("b", [5.0, 4.0, 6.0])}, rounds=3)
  assert calls == ["a", "b"] * 3  # Interleaved, not a's rounds then b's.
  assert [(r["impl"], r["time_s"], r["round_times_s"]) for r in rows] == [
      ("a", 2.0, [3.0, 1.0, 2.0]), ("b", 5.0, [5.0, 4.0, 6.0])]
  assert rows[0]["steps_per_s"] == 5.0  # The median round's own numbers.
  assert "time s, every round" in bench.to_markdown(rows, bench.environment())
  with pytest.raises(ValueError, match="rounds"):
    bench.run_suite(get_config("smoke"), *digits, dtypes=(), rounds=0)


def test_baselines_first_times_them_before_the_genjax_rows(digits):
  """With `baselines_first` a run cut off among its genjax rows has already kept (on_row)
  what they are compared with; the rows and ratios are the same otherwise."""
  kept = []

  def fake_baseline(images, *, batch_size, max_steps):
    assert not kept  # Before any genjax row.
    return {"epoch_s": 2.0, "steps": max_steps}

  rows = bench.run_suite(get_config("smoke"), *digits, batch_sizes=(32,),
                         baselines={"fake": fake_baseline}, steps=2, warmup=False,
                         baselines_first=True, on_row=kept.append)
  assert [r["impl"] for r in kept] == [r["impl"] for r in rows] == ["fake", "genjax"]
  rows = bench.add_ratios(rows, ["fake"])
  assert rows[1]["x_fake"] == pytest.approx(rows[1]["steps_per_s"] / 1.0)


def test_cpu_model_names_the_bf16_matmul_units(tmp_path):
  info = tmp_path / "cpuinfo"
  info.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 amx_bf16 "
                  "avx512_bf16 amx_tile\n\nprocessor\t: 1\nmodel name\t: Some Xeon\n")
  assert bench.env.cpu_model(str(info)) == "Some Xeon, amx_bf16 avx512_bf16"
  info.write_text("model name\t: Some EPYC\nflags\t\t: fpu avx2 fma\n")
  assert bench.env.cpu_model(str(info)) == "Some EPYC, no bf16 matmul units"
  assert bench.env.cpu_model(str(tmp_path / "absent")) is None


def test_conv_layer_timing_script_writes_a_row_per_layer_and_dtype(tmp_path):
  out = tmp_path / "layers.md"
  run_python(["experiments/conv_layer_timing.py", "--batch=2", "--calls=1",
              "--dtypes=float32", f"--out={out}"])
  rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and
          "layer" not in line]
  # (The script is not imported here: its absl flags would clash with other scripts'.)
  assert len(rows) == 8, rows  # the conv VAE's five layers and DCGAN generator's three
  for row in rows:  # four positive times per row
    times = [float(cell) for cell in row.strip("| ").split(" | ")[2:]]
    assert len(times) == 4 and all(t > 0 for t in times), row


def test_a_batch_larger_than_the_split_gives_one_clear_error(digits):
  # With --steps the split was cut to zero images first: a reshape error named nothing.
  c = config_lib.override(get_config("smoke"), {"batch_size": 128})
  with pytest.raises(ValueError, match="batch_size 128 exceeds the 96 training examples"):
    bench.time_epoch(c, *digits, repeats=1, steps=2)
  if not torch_tutorial.available():
    return
  # The baselines gave a row of 0 steps (resident; its ratio divided by zero) or of one
  # partial batch labelled batch 128 (tutorial).
  for name, fn in torch_tutorial.BASELINES.items():
    with pytest.raises(ValueError, match="batch_size 128: need 1 <= batch_size <= the 96"):
      fn(digits[0], batch_size=128, max_steps=2)
    with pytest.raises(ValueError, match="batch_size 0"):
      fn(digits[0], batch_size=0, max_steps=2)


@pytest.mark.skipif(not torch_tutorial.available(), reason="torch not installed (bench extra)")
def test_tutorial_step_makes_noise_and_targets_on_the_host(digits, monkeypatch):
  """As the tutorial does (`Variable(torch.randn(bs, z_dim).to(device))`): on a GPU, making
  them there instead skips the tutorial's host draws and copies and flatters the baseline."""
  import torch  # pylint: disable=import-outside-toplevel

  made = []
  for name in ("randn", "ones", "zeros"):
    real = getattr(torch, name)
    monkeypatch.setattr(torch, name, lambda *a, _real=real, _name=name, **k: (
        made.append((_name, k.get("device"))), _real(*a, **k))[1])
  G, D, G_opt, D_opt, criterion = torch_tutorial.build()
  x = torch.from_numpy(digits[0][:8].astype(np.float32) / 127.5 - 1.0).reshape(8, 784)
  torch_tutorial._train_step(  # pylint: disable=protected-access
      torch, x, G, D, G_opt, D_opt, criterion, 100, "cpu")
  assert sorted(made) == [("ones", None), ("ones", None), ("randn", None), ("randn", None),
                          ("zeros", None)]


def test_bench_cli_records_where_the_baselines_ran(tmp_path):
  pytest.importorskip("torch")
  run_python(["experiments/bench.py", "--config=experiments/configs/mlp_gan.py:smoke",
              "--batch_sizes=32", "--steps=1", "--nowarmup", "--torch_threads=1",
              "--baselines=torch_resident_tuned", f"--out={tmp_path}"])
  doc = json.loads((tmp_path / "bench.json").read_text())
  assert doc["environment"]["torch_device"] == "cpu"  # no CUDA torch here
  assert [r["impl"] for r in doc["rows"]] == ["genjax", "torch_resident_tuned_1thr"]
  kept = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
  assert kept[0]["environment"]["torch_device"] == "cpu" and len(kept) == 3
  for row, final in zip(kept[1:], doc["rows"], strict=True):  # The final rows add ratios.
    assert row == {k: final[k] for k in row}
  assert " on cpu; fp32 matmuls" in (tmp_path / "bench.md").read_text().splitlines()[0]


def test_precision_record_names_torchs_cudnn_convolutions(monkeypatch):
  """With CUDA, torch's convolutions follow `cudnn.allow_tf32` (TF32 by default), not the fp32
  matmul precision: a conv model's record said 'torch highest' of TF32 convolutions."""
  import types  # pylint: disable=import-outside-toplevel
  fake = types.SimpleNamespace(
      get_float32_matmul_precision=lambda: "highest",
      cuda=types.SimpleNamespace(is_available=lambda: True),
      backends=types.SimpleNamespace(cudnn=types.SimpleNamespace(allow_tf32=True)))
  monkeypatch.setitem(__import__("sys").modules, "torch", fake)
  precision = bench.env.matmul_precision()
  assert precision["torch"] == "highest" and precision["torch_cudnn_conv"] == "tf32"
  env = {**bench.environment(), "fp32_matmul_precision": precision}
  assert "torch highest (torch's cuDNN convs tf32)" in bench.to_markdown([], env)
  fake.cuda.is_available = lambda: False  # CPU torch: no such line
  assert "torch_cudnn_conv" not in bench.env.matmul_precision()


def test_device_timeline_counts_kernels_overlap_and_gaps(tmp_path):
  """A GPU-like trace: two streams, kernels [0, 10) and [5, 15) overlapping, then [20, 30)
  after a gap; host events and another process are not the device's."""
  import gzip  # pylint: disable=import-outside-toplevel

  from genjax.bench import profile  # pylint: disable=import-outside-toplevel
  meta = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
          {"ph": "M", "pid": 1, "tid": 7, "name": "thread_name", "args": {"name": "Stream #7"}},
          {"ph": "M", "pid": 1, "tid": 8, "name": "thread_name", "args": {"name": "Stream #8"}},
          {"ph": "M", "pid": 1, "tid": 9, "name": "thread_name", "args": {"name": "XLA Ops"}}]
  kernel = lambda tid, ts, dur: {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur,
                                 "name": "gemm_fusion"}
  events = meta + [kernel(7, 0, 10), kernel(8, 5, 10), kernel(7, 20, 10), kernel(9, 0, 30),
                   {"ph": "X", "pid": 2, "tid": 1, "ts": 0, "dur": 99, "name": "host"}]
  path = tmp_path / "trace.json.gz"
  with gzip.open(path, "wt") as f:
    json.dump({"traceEvents": events}, f)
  rows = {r["line"]: r for r in profile.device_timeline(profile.read_trace(str(path)))}
  assert set(rows) == {"/device:GPU:0 Stream #7", "/device:GPU:0 Stream #8",
                       "/device:GPU:0 XLA Ops", "streams"}
  assert rows["streams"] == {"line": "streams", "events": 3, "busy_us": 30.0,
                             "active_us": 25.0, "span_us": 30.0}
  assert rows["/device:GPU:0 Stream #7"]["active_us"] == 20.0
  assert rows["/device:GPU:0 XLA Ops"]["events"] == 1


def test_bench_cli_profile_mode_writes_its_table(tmp_path):
  """--profile_dir traces the loop's epoch (first --steps batches) and writes the ops table to
  --out/profile.md; XLA:CPU has no device lines, so no timeline table there."""
  run_python(["experiments/bench.py", "--config=experiments/configs/mlp_gan.py:smoke",
              f"--profile_dir={tmp_path / 'trace'}", "--steps=2", f"--out={tmp_path}",
              "--config.xla_options=xla_gpu_command_buffer_scheduling_mode=CONCURRENT"])
  md = (tmp_path / "profile.md").read_text()
  assert "2 steps traced" in md and "CONCURRENT" in md and "| op | s | share |" in md
  assert md.count("\n| ") > 3 and "device line" not in md
