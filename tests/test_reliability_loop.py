"""The host loop under faults: injected NaN (stop / rollback), kill -9 mid-save, SIGTERM,
and clear errors for bad inputs. Runs the tiny config of experiments/fault_injection.py;
a persistent compilation cache lets the subprocesses reuse this process's compiles. Runs
are 4 epochs of 4 steps (the script's trials run 8)."""
import json
import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from experiments import fault_injection as fi
from genjax import checkpoint as ck
from genjax.train import guard, loop


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("jax_cache"))
  old = (jax.config.jax_compilation_cache_dir,
         jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", d)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  yield d
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


EPOCHS = 4
SHORT = {"epochs": EPOCHS}


@pytest.fixture(scope="module")
def clean_run(cache_dir, tmp_path_factory):
  """An uninterrupted run of seed 0: the reference every fault must reproduce."""
  wd = str(tmp_path_factory.mktemp("clean"))
  loop.train(fi.make_config(0, **SHORT), wd, quiet=True, dataset=fi.subset_dataset())
  return wd


def leaves_equal(a, b):
  return jax.tree.all(jax.tree.map(np.array_equal, a, b))  # Structures must match too.


def test_injected_nan_stops_at_its_step_naming_the_term(cache_dir, tmp_path):
  config = fi.make_config(0, epochs=3, debug_nan_step=9)  # Step 9 lies in epoch 3.
  with pytest.raises(guard.NonFiniteError, match=r"Non-finite d_loss.* at step 9 \(epoch 3\)"):
    loop.train(config, str(tmp_path), quiet=True, dataset=fi.subset_dataset())
  # Good checkpoints intact: epochs 1 and 2 (steps 4, 8) restore, SHA-256 verified; no
  # checkpoint of the bad epoch was written.
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]
  _, meta = fi.final_state(str(tmp_path), 0)
  assert meta["epoch"] == 2


def test_unguarded_nan_run_goes_on_without_black_grids(cache_dir, tmp_path, caplog):
  """nan_policy='off' promises no stop: the NaN samples' grids are skipped with a warning
  instead of being drawn as black digits, and the run ends."""
  config = fi.make_config(0, epochs=3, debug_nan_step=5, nan_policy="off", sample_every=1)
  loop.train(config, str(tmp_path), quiet=True, dataset=fi.subset_dataset())  # Step 5: epoch 2.
  assert sorted(os.listdir(tmp_path / "samples")) == ["epoch_0001.png"]
  assert "epoch_0002.png not written: 4 of 4 images hold NaN" in caplog.text
  assert fi.epochs_logged(str(tmp_path)) == 3


def test_rollback_recovers_and_matches_a_clean_run(clean_run, tmp_path):
  # Same injected step as above: the poisoned epoch compiles once (persistent cache).
  config = fi.make_config(0, debug_nan_step=9, nan_policy="rollback", **SHORT)
  loop.train(config, str(tmp_path), quiet=True, dataset=fi.subset_dataset())
  assert fi.same_params(str(tmp_path), clean_run, 0, EPOCHS)


def test_sigterm_then_kill9_mid_save_then_resume_matches_a_clean_run(clean_run, cache_dir,
                                                                     tmp_path):
  """One chain of runs in subprocesses: SIGTERM after the first epoch (clean exit with a
  checkpoint), then kill -9 inside the resumed run's first save, then run to the end."""
  wd = str(tmp_path / "run")
  proc = fi.spawn(wd, 0, cache_dir, overrides=SHORT)
  while fi.epochs_logged(wd) < 1 and proc.poll() is None:
    time.sleep(0.005)
  proc.terminate()
  code, out = fi.finish(proc)
  assert code == 0 and "CHILD_DONE" in out
  done = fi.epochs_logged(wd)
  assert done < EPOCHS and str(done * 4) in fi.ckpt_listing(wd)  # Stopped, checkpointed.

  code, _ = fi.finish(fi.spawn(wd, 0, cache_dir, overrides=SHORT, kill_save_at=1))
  assert code == -9 and fi.epochs_logged(wd) < EPOCHS
  fi.run_to_end(wd, 0, cache_dir, overrides=SHORT)
  assert fi.same_params(wd, clean_run, 0, EPOCHS)


def _data(images=None, labels=None):
  d = fi.subset_dataset()
  return d._replace(images=d.images if images is None else images,
                    labels=d.labels if labels is None else labels)


BAD_DATA = [
    (lambda d: _data(images=d.images.astype(np.float32) / 255), "must be uint8"),
    (lambda d: _data(images=np.zeros((256, 32, 32, 1), np.uint8)), "must have shape"),
    (lambda d: _data(labels=d.labels + 5), "must lie in 0..9"),
    (lambda d: _data(images=d.images[:10], labels=d.labels[:10]), "fewer than one batch"),
    (lambda d: _data(images=np.zeros_like(d.images)), "blank"),
]


@pytest.mark.parametrize("make,message", BAD_DATA, ids=[m for _, m in BAD_DATA])
def test_bad_dataset_is_one_clear_error(tmp_path, make, message):
  with pytest.raises(ValueError, match=message):
    loop.train(fi.make_config(0), str(tmp_path), quiet=True,
               dataset=make(fi.subset_dataset()))


def test_checkpoint_of_another_architecture_is_named(clean_run, tmp_path):
  wd = str(tmp_path / "run")
  shutil.copytree(clean_run, wd)
  with pytest.raises(ck.CheckpointMismatchError, match="g_params"):
    loop.train(fi.make_config(0, latent_dim=64, epochs=EPOCHS + 1), wd, quiet=True,
               dataset=fi.subset_dataset())


def test_resuming_with_another_batch_size_is_refused_and_changes_nothing(clean_run, tmp_path):
  """Steps are numbered epoch x steps per epoch: a renumbered resume would save nothing."""
  wd = str(tmp_path / "run")
  shutil.copytree(clean_run, wd)
  before = {name: open(os.path.join(wd, name)).read() for name in ("config.json",
                                                                    "metrics.jsonl")}
  steps = sorted(os.listdir(os.path.join(wd, "checkpoints")))
  with pytest.raises(ValueError, match=r"made with 4 steps per epoch; this config gives 2 "
                                       r"\(another batch_size"):
    loop.train(fi.make_config(0, epochs=EPOCHS + 1, batch_size=128), wd, quiet=True,
               dataset=fi.subset_dataset())
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == steps
  assert before == {name: open(os.path.join(wd, name)).read() for name in before}


def _event_files(folder):
  """Each TensorBoard event file in `folder`, oldest first, as its list of Events (TFRecord
  framing: u64 length, u32 crc, payload, u32 crc)."""
  import struct  # pylint: disable=import-outside-toplevel

  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel

  files = []
  for path in sorted((os.path.join(folder, f) for f in os.listdir(folder)),
                     key=os.path.getmtime):
    raw, events, i = open(path, "rb").read(), [], 0
    while i < len(raw):
      (n,) = struct.unpack("<Q", raw[i:i + 8])
      events.append(event_pb2.Event.FromString(raw[i + 12:i + 12 + n]))
      i += 16 + n
    files.append(events)
  return files


def test_resume_hides_tensorboard_events_logged_after_the_restored_checkpoint(tmp_path):
  """A run stopped after logging epoch 2 but before saving it resumes from epoch 1; the new
  event file's session start makes TensorBoard drop the stopped run's epoch-2 points."""
  wd = str(tmp_path / "run")
  config = fi.make_config(0, epochs=2, tensorboard=True)
  loop.train(config, wd, quiet=True, dataset=fi.subset_dataset())
  steps = sorted(int(s) for s in os.listdir(os.path.join(wd, "checkpoints")))
  shutil.rmtree(os.path.join(wd, "checkpoints", str(steps[-1])))  # Epoch 2 never saved.
  time.sleep(1.1)  # A new event file name (it holds the time in seconds).
  loop.train(config, wd, quiet=True, dataset=fi.subset_dataset())
  first, resumed = _event_files(os.path.join(wd, "tb"))
  per_epoch = steps[0]
  assert max(e.step for e in first if e.summary.value) == 2 * per_epoch
  starts = [e.step for e in resumed if e.HasField("session_log")
            and e.session_log.status == e.session_log.START]
  assert starts == [per_epoch + 1]  # TensorBoard purges events at steps >= this one.
  assert [e.step for e in resumed if e.summary.value and
          e.summary.value[0].tag == "d_loss"] == [2 * per_epoch]


def test_rollback_hides_the_undone_epochs_in_tensorboard(cache_dir, tmp_path, monkeypatch):
  """Checkpoints every 2 epochs, a NaN in epoch 2: the rollback restores the fresh state and
  trains epoch 1 again. Its first logging must not stay beside the second in TensorBoard,
  and the progress bar goes back to 0 (it ended at 3 of 2 epochs)."""
  import tqdm.auto  # pylint: disable=import-outside-toplevel
  counts = []

  class RecordedBar(tqdm.auto.tqdm):
    def close(self):
      counts.append(self.n)
      super().close()

  monkeypatch.setattr(tqdm.auto, "tqdm", RecordedBar)
  config = fi.make_config(0, epochs=2, checkpoint_every=2, debug_nan_step=5,
                          nan_policy="rollback", tensorboard=True, progress_bar=True)
  loop.train(config, str(tmp_path), quiet=False, dataset=fi.subset_dataset())
  assert counts[0] == 2  # (tqdm closes again when collected)
  files = _event_files(str(tmp_path / "tb"))
  assert len(files) == 2  # the rollback's file, named apart within the same second
  starts = [e.step for e in files[1] if e.HasField("session_log")
            and e.session_log.status == e.session_log.START]
  assert starts == [1]  # TensorBoard drops the first file's points from step 1 on
  losses = [[e.step for e in f if e.summary.value and e.summary.value[0].tag == "d_loss"]
            for f in files]
  assert losses == [[4], [4, 8]]


def test_sigterm_in_an_epoch_rolled_back_exits_at_once(cache_dir, tmp_path, monkeypatch):
  """A SIGTERM that lands in a bad epoch: the loop rolls back to epoch 1's checkpoint and
  returns, with nothing new to save, instead of training epoch 2 again inside the
  preemption's grace period."""
  reads, to_host = [], loop.distributed.to_host

  def signalling_to_host(tree):  # The 2nd read is epoch 2's metrics: SIGTERM during it.
    reads.append(1)
    if len(reads) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return to_host(tree)

  monkeypatch.setattr(loop.distributed, "to_host", signalling_to_host)
  config = fi.make_config(0, debug_nan_step=5, nan_policy="rollback", **SHORT)  # Epoch 2.
  loop.train(config, str(tmp_path), quiet=True, dataset=fi.subset_dataset())
  assert len(reads) == 2 and loop.logged_epochs(str(tmp_path)) == 1
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4"]


def test_a_run_trained_on_more_devices_loads_on_this_machine(clean_run, tmp_path):
  """num_devices and the batch split are training settings: a run trained on 8 devices is
  read (sampling, evaluation, a warm start) on however many devices are here."""
  wd = str(tmp_path / "run")
  shutil.copytree(clean_run, wd)
  path = os.path.join(wd, "config.json")
  saved = json.load(open(path))
  open(path, "w").write(json.dumps({**saved, "num_devices": 8}))
  config, setup, state = loop.load_trained(wd)
  assert config.num_devices == 8 and setup.mesh.shape["data"] == jax.device_count()
  assert leaves_equal(state, loop.load_trained(clean_run)[2])


def test_sigterm_flag_restores_a_handler_set_outside_python(monkeypatch):
  """signal.signal returns None for a handler installed from C; passing that back failed."""
  calls, real, original = [], signal.signal, signal.getsignal(signal.SIGTERM)

  def fake_signal(signum, handler):
    calls.append(handler)
    return None if len(calls) == 1 else real(signum, handler)

  monkeypatch.setattr(loop.signal, "signal", fake_signal)
  with loop._sigterm_flag() as preempted:  # pylint: disable=protected-access
    assert not preempted()
  assert calls[-1] is signal.SIG_DFL
  real(signal.SIGTERM, signal.SIG_DFL if original is None else original)


def test_metrics_purge_keeps_the_records_before_the_restored_step(tmp_path):
  """What the loop does on resume and rollback: records at or after the step are forgotten, a
  line cut short by a kill with them."""
  from genjax.metric_writers import JsonlWriter, read_jsonl  # pylint: disable=C0415

  path = str(tmp_path / "metrics.jsonl")
  writer = JsonlWriter(path)
  for epoch in (1, 2, 3):
    writer.write(4 * epoch, {"epoch": epoch})
  with open(path, "a") as f:
    f.write('{"step": 16, "epo')
  writer.purge(2 * 4 + 1)
  assert [(r["step"], r["epoch"]) for r in read_jsonl(path)] == [(4, 1), (8, 2)]
  assert open(path).read().endswith("}\n")
