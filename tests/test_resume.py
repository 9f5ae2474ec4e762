"""Crashes and reruns: real jobs killed at several points and resumed give the arrays of an
uninterrupted run without redoing finished shards; SIGINT/SIGTERM stop cleanly; one writer per
store; the CPU path is deterministic and independent of the batch size."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import zarr

from extract.job import run_job
from extract.loader import FeatureStore
from extract.loader.feature_store import StoreFormatError
from extract.store.layout import PROGRESS, shard_file
from extract.store.lock import LOCK_NAME
from extract.store import writer as writer_module
from extract.store.output import StoreError

from conftest import (ARGS, SHARD, assert_same_store, kill_after_shards, start, wait_for_shards,
                      write_corpus)


@pytest.mark.parametrize("kill_after", [0, 2, 5])
def test_sigkill_then_resume_gives_the_uninterrupted_store(corpus, reference, tmp_path,
                                                           kill_after):
    out = tmp_path / "out.zarr"
    kill_after_shards(corpus, out, kill_after)
    done = {int(p.stem) for p in (out / PROGRESS).glob("*.json")}
    with pytest.raises(StoreFormatError, match="incomplete.*--resume"):
        FeatureStore(out)
    refused = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus), str(out),
                              *ARGS], capture_output=True, text=True)
    assert refused.returncode == 2
    assert f"{out} holds an unfinished store; pass --resume to finish it" in refused.stderr

    resumed = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus), str(out),
                              *ARGS, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "did not finish" in resumed.stderr                          # the stale lock
    extracted = int(re.search(r"\((\d+) extracted by this run\)", resumed.stdout).group(1))
    offsets = FeatureStore(reference).offsets
    finished = sum(set(range(a // SHARD, (b - 1) // SHARD + 1)) <= done
                   for a, b in zip(offsets[:-1], offsets[1:]))
    assert extracted == len(offsets) - 1 - finished
    assert finished > 0 or kill_after < 5
    assert_same_store(out, reference)


def test_resume_redoes_finished_shards_a_machine_crash_left_damaged(corpus, reference,
                                                                    tmp_path):
    """After a power cut, a shard marked done may have a file that never reached the disk:
    empty, missing or zeros at its end; or its marker may be empty, or hold JSON that is not
    a shard's statistics. --resume redoes those five and keeps the whole ones."""
    out = tmp_path / "out.zarr"
    kill_after_shards(corpus, out, 5)
    first, second, third, fourth, fifth = sorted(int(p.stem)
                                                 for p in (out / PROGRESS).glob("*.json"))[:5]
    shard_file(out / "mel", first, 2).write_bytes(b"")
    shard_file(out / "voiced", second, 1).unlink()
    with open(shard_file(out / "f0", third, 1), "r+b") as f:
        f.seek(-100, os.SEEK_END)
        f.write(bytes(100))
    (out / PROGRESS / f"{fourth:08d}.json").write_text("")
    marker = out / PROGRESS / f"{fifth:08d}.json"
    moments = json.loads(marker.read_text())
    moments["f0"]["sum"] = ["x"]
    marker.write_text(json.dumps(moments))
    resumed = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus), str(out),
                              *ARGS, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "note: 5 finished shard(s)" in resumed.stderr and "redoing them" in resumed.stderr
    assert_same_store(out, reference)


@pytest.mark.parametrize("damage", [
    lambda out: (out / "f0" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "arr'),
    lambda out: (out / "offsets" / "zarr.json").write_text(
        (out / "offsets" / "zarr.json").read_text().replace('"shape": [', '"shape": [[], ')),
    lambda out: os.truncate(out / "utterances" / "id" / "c" / "0", 10),
])
def test_resuming_a_damaged_store_is_one_clear_error(corpus, tmp_path, damage):
    out = tmp_path / "out.zarr"
    kill_after_shards(corpus, out, 2)
    damage(out)
    resumed = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus), str(out),
                              *ARGS, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr
    assert resumed.stderr.splitlines()[-1].startswith(
        f"tts-extract: error: cannot resume {out}: it is damaged ("), resumed.stderr


def test_resume_checks_finished_shards_with_progress_and_ignores_other_files(
        corpus, reference, tmp_path, monkeypatch, capfd):
    """The check of finished shards shows a progress line when slow (here: at once), and a
    file in progress/ that is not a marker's (a note, a shard number without its zeros) is
    neither a finished shard nor an error."""
    out = tmp_path / "out.zarr"
    kill_after_shards(corpus, out, 3)
    marked = len(list((out / PROGRESS).glob("*.json")))
    (out / PROGRESS / "notes.json").write_text("{}")
    (out / PROGRESS / "7.json").write_text("{}")
    monkeypatch.setattr(writer_module, "CHECK_PROGRESS_DELAY_S", 0.0)
    usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(path)._replace(free=0))
    result = run_job(corpus, out, device="cpu", batch_size=2, shard_frames=SHARD, resume=True)
    assert result.extracted < result.utterances
    err = capfd.readouterr().err
    assert re.search(rf"checking finished shards: \[#+\] {marked}/{marked} shards", err)
    assert_same_store(out, reference)
    # the disk note counts the unfinished shards only
    number, unit = re.search(r"the store needs about ([\d.]+) (bytes|kB|MB) more", err).groups()
    needed = float(number) * {"bytes": 1, "kB": 1e3, "MB": 1e6}[unit]
    whole = sum(f.stat().st_size for name in ("mel", "f0", "voiced", "voiced_prob", "energy")
                for f in (out / name / "c").rglob("*") if f.is_file())
    shards = len(list((out / "f0" / "c").iterdir()))
    assert abs(needed - whole * (shards - marked) / shards) < 0.05 * whole


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_cleanly_and_resume(corpus, reference, tmp_path, signum):
    out = tmp_path / "out.zarr"
    job = start(corpus, out)
    wait_for_shards(job, out, 2)
    job.send_signal(signum)
    _, stderr = job.communicate(timeout=60)
    assert job.returncode == 128 + signum, stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "--resume" in stderr
    assert json.loads((out / LOCK_NAME).read_text() or "null") is None   # released
    resumed = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus), str(out),
                              *ARGS, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "finished by a resumed run on cpu" in resumed.stdout       # not the whole job's time
    assert_same_store(out, reference)


def test_a_second_job_on_the_same_output_is_refused(corpus, tmp_path):
    out = tmp_path / "out.zarr"
    first = start(corpus, out)
    try:
        wait_for_shards(first, out, 1)
        first.send_signal(signal.SIGSTOP)          # still holding the store, however slow we are
        for flag in ("--resume", "--overwrite"):
            second = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus),
                                     str(out), *ARGS, flag], capture_output=True, text=True)
            assert second.returncode == 2
            assert f"being written by another tts-extract job (pid {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_resume_starts_a_fresh_output_and_does_nothing_on_a_complete_one(corpus, reference,
                                                                         tmp_path):
    """So a requeued batch job can always pass --resume."""
    out = tmp_path / "fresh.zarr"
    for expected in ("36 extracted by this run", "already complete"):
        result = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus), str(out),
                                 *ARGS, "--resume"], capture_output=True, text=True)
        assert result.returncode == 0 and expected in result.stdout, result.stderr
    assert_same_store(out, reference)


@pytest.mark.parametrize("stage", ["group", "index"])
def test_a_job_stopped_while_creating_its_store_is_started_over(corpus, reference, tmp_path,
                                                                monkeypatch, stage):
    """Killed before the store's attributes (a bare Zarr group) or before its index (our
    attributes, no arrays): a rerun with --resume starts over, as no shard was finished."""
    out = tmp_path / "out.zarr"

    def stop(*args, **kwargs):
        raise KeyboardInterrupt
    if stage == "group":
        monkeypatch.setattr(zarr.Group, "attrs", property(stop))
    else:
        monkeypatch.setattr(writer_module.StoreWriter, "_write_index", stop)
    with pytest.raises(KeyboardInterrupt):
        run_job(corpus, out, device="cpu", batch_size=2, shard_frames=SHARD, show_progress=False)
    monkeypatch.undo()
    assert (out / "zarr.json").exists() and not (out / "offsets").exists()
    run_job(corpus, out, device="cpu", batch_size=2, shard_frames=SHARD, resume=True,
            show_progress=False)
    assert_same_store(out, reference)


def test_resume_refuses_a_store_of_other_settings(corpus, reference, tmp_path):
    out = tmp_path / "out.zarr"
    kill_after_shards(corpus, out, 1)
    other = subprocess.run([sys.executable, "-m", "extract", "run", str(corpus), str(out),
                            "--device", "cpu", "--resume"], capture_output=True, text=True)
    assert other.returncode == 2 and "started with different" in other.stderr


def test_resume_names_the_preset_fields_that_differ(mixed_corpus, tmp_path):
    """A store of the built-in hifigan resumed with a file that changes one pitch field: the
    refusal names it (and the name and description, which a preset file sets)."""
    out = tmp_path / "out.zarr"
    run_job(mixed_corpus, out, device="cpu", limit=2, show_progress=False)
    preset = tmp_path / "hifigan-600.yaml"
    preset.write_text("base: hifigan\npitch:\n  fmax: 600.0\n")
    with pytest.raises(StoreError, match=re.escape(
            "started with different config (description, name, pitch.fmax);")):
        run_job(mixed_corpus, out, preset=str(preset), device="cpu", limit=2, resume=True,
                show_progress=False)


def test_resume_refuses_a_store_whose_spans_moved(corpus, reference, tmp_path):
    """As a span found on another device kind may: the frames would cover other audio."""
    out = tmp_path / "moved.zarr"
    shutil.copytree(reference, out)
    spans = zarr.open_array(str(out / "spans"), mode="r+")
    spans[3, 0] = spans[3, 0] + 1
    with pytest.raises(StoreError, match="different utterances"):
        run_job(corpus, out, device="cpu", batch_size=2, shard_frames=SHARD, resume=True,
                show_progress=False)


def test_cpu_runs_are_identical_whatever_the_batch_size(corpus, reference, tmp_path):
    out = tmp_path / "again.zarr"
    run_job(corpus, out, device="cpu", batch_size=7, shard_frames=SHARD, show_progress=False)
    assert_same_store(out, reference)
    assert sorted(os.listdir(out)) == sorted(os.listdir(reference))


def test_resampled_files_come_out_the_same_in_batches_of_one_and_of_all(tmp_path):
    """Files of 0.8-4.3 s at 16 and 44.1 kHz: resampled together in one batch, they used to
    come out up to 6e-5 in log-mel from themselves resampled alone."""
    specs = [(f"r{k}", 0.8 + 0.7 * k, (16000, 44100)[k % 2], 1, "pcm16") for k in range(6)]
    corpus = write_corpus(tmp_path / "corpus", specs)
    metadata = corpus / "metadata.csv"
    metadata.write_text("".join(f"{line}|spk\n" for line in metadata.read_text().splitlines()))
    for batch_size in (1, 6):
        run_job(corpus, tmp_path / f"{batch_size}.zarr", device="cpu", batch_size=batch_size,
                show_progress=False)
    assert_same_store(tmp_path / "1.zarr", tmp_path / "6.zarr")
