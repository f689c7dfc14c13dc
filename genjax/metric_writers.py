"""Where results go: per-epoch scalars to `metrics.jsonl` and TensorBoard event files, an
evaluation script's result to stdout and a JSON file (`report`)."""
from __future__ import annotations

import json
import os
from typing import Mapping

from absl import logging


def make_parent_dir(path: str) -> str:
  """Makes the folder that will hold the file `path` (if missing); returns `path`. Scripts
  call it before their work, so that a missing folder fails nothing at the end."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  return path


def write_atomic(path: str, text: str) -> None:
  """A kill mid-write leaves the old file or the new one, never half of one."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


class JsonlWriter:
  """Appends one JSON object per call; reopening the file continues it (for resume)."""

  def __init__(self, path: str):
    self.path = make_parent_dir(path)

  def purge(self, step: int) -> None:
    """Forgets the records at or after `step` (what a stopped or rolled-back run logged past
    its restored checkpoint)."""
    if os.path.exists(self.path):
      keep = [r for r in read_jsonl(self.path) if r.get("step", 0) < step]
      write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in keep))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}})
              + "\n")

  def close(self) -> None:
    pass


class TensorboardWriter:
  """TensorBoard event files in `logdir`. With `purge_step`, the new file starts with a
  session start at that step, and TensorBoard hides the events that earlier files hold at or
  after it: on resume, what a stopped run logged past its restored checkpoint."""

  def __init__(self, logdir: str, purge_step: int | None = None):
    self._logdir, self._files = logdir, 0
    self._open(purge_step)

  def _open(self, purge_step: int | None) -> None:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

    # The name holds the time in seconds: a suffix keeps a second file of this writer apart.
    suffix = f".{self._files}" if self._files else ""
    self._writer = SummaryWriter(self._logdir, purge_step=purge_step, filename_suffix=suffix)
    self._files += 1

  def purge(self, step: int) -> None:
    """Continues in a new event file whose session start hides the events logged at or
    after `step` (e.g. the epochs a rollback undid)."""
    self._writer.close()
    self._open(step)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    for k, v in scalars.items():
      self._writer.add_scalar(k, float(v), int(step))
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class MultiWriter:
  def __init__(self, writers):
    self.writers = list(writers)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    for w in self.writers:
      w.write(step, scalars)

  def purge(self, step: int) -> None:
    for w in self.writers:
      w.purge(step)

  def close(self) -> None:
    for w in self.writers:
      w.close()


def read_jsonl(path: str) -> list[dict]:
  """The records of a .jsonl file ([] if there is none), skipping a line cut short by a kill."""
  out = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          out.append(json.loads(line))
        except json.JSONDecodeError:
          logging.warning("genjax: skipping a damaged line of %s: %r", path, line[:80])
  return out


def report(result: Mapping, out: str = "", hidden: tuple[str, ...] = ()) -> None:
  """Prints `result` as JSON, less the keys in `hidden` (long per-image lists), and writes
  all of it to the file `out` if given (its folder made if missing)."""
  print(json.dumps({k: v for k, v in result.items() if k not in hidden}, indent=2))
  if out:
    with open(make_parent_dir(out), "w") as f:
      json.dump(result, f, indent=2)
