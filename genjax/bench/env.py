"""What a benchmark number depends on: device, library versions, date, machine load."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any

import jax

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "torch")


def _version(name: str) -> str | None:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 matmul units (see models/mixed_dot.py)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str | None:
  """e.g. 'Intel(R) Xeon(R) Processor, amx_bf16 avx512_bf16' (Linux; None elsewhere): the CPU
  and which bf16 matmul units it has, on which CPU speed ratios depend."""
  try:
    with open(cpuinfo, encoding="utf-8") as f:
      fields = dict(line.split(":", 1) for line in f if ":" in line)
  except OSError:
    return None
  fields = {k.strip(): v.strip() for k, v in fields.items()}
  units = sorted(set(fields.get("flags", "").split()) & set(_BF16_CPU_FLAGS))
  return f"{fields.get('model name', platform.processor())}, " + (
      " ".join(units) if units else "no bf16 matmul units")


def device_description() -> str:
  """e.g. 'cpu x1 (2 cores: Intel(R) Xeon(R) Processor, amx_bf16 avx512_bf16)' or
  'NVIDIA H100 80GB HBM3 x8'."""
  devices = jax.devices()
  kind = devices[0].device_kind
  text = f"{kind} x{len(devices)}"
  if devices[0].platform == "cpu":
    model = cpu_model()
    text += f" ({os.cpu_count()} cores" + (f": {model})" if model else ")")
  return text


def matmul_precision() -> dict[str, str | None]:
  """How each side multiplies fp32 matrices: JAX's `jax_default_matmul_precision` (None: the
  backend's default, TF32 on NVIDIA tensor cores) and, where torch is loaded,
  `torch.get_float32_matmul_precision()` ('highest': full fp32, its default); with CUDA also
  its cuDNN convolutions' own switch (`torch.backends.cudnn.allow_tf32`, True by default:
  TF32 convolutions beside full-fp32 matmuls) as 'torch_cudnn_conv'."""
  out = {"jax": jax.config.jax_default_matmul_precision}
  torch = sys.modules.get("torch")
  if torch is not None:
    out["torch"] = torch.get_float32_matmul_precision()
    if torch.cuda.is_available():
      out["torch_cudnn_conv"] = "tf32" if torch.backends.cudnn.allow_tf32 else "highest"
  return out


def environment() -> dict[str, Any]:
  """A JSON-able record of where and when a benchmark ran."""
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  return {
      "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
      "device": device_description(),
      "platform": jax.devices()[0].platform,
      "num_devices": jax.device_count(),
      "num_processes": jax.process_count(),
      "cpu_count": os.cpu_count(),
      "load_average_1_5_15": list(load) if load else None,
      "python": platform.python_version(),
      "machine": platform.machine(),
      "versions": {p: _version(p) for p in _PACKAGES},
      "fp32_matmul_precision": matmul_precision(),
  }
