"""The loader on the oldest torch, numpy and zarr it supports (pyproject's floors), in an
environment with nothing else but google-crc32c; and the job there, which lacks its dependencies.

scripts/test.sh builds that environment (.venv-torch2.4: torch 2.4.1, numpy 1.26.4, zarr 3.1.1)
and names its Python in TTS_EXTRACT_LOADER_PYTHON; the tests install our wheel there as the README
tells training environments to, without its dependencies.
"""

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
import zarr

LOADER_PYTHON = os.environ.get("TTS_EXTRACT_LOADER_PYTHON")
PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"

READ_EVERYTHING = """
import json, sys
import numpy as np, torch, zarr
from torch.utils.data import DataLoader
import extract
from extract import FeatureStore, LengthBucketSampler, pad_collate

if __name__ == "__main__":
    store_path, out, context = sys.argv[1:]
    store = FeatureStore(store_path, in_memory=context == "spawn")   # shared memory on 2.4 too
    loader = DataLoader(store, batch_sampler=LengthBucketSampler(store.lengths, batch_size=2),
                        collate_fn=pad_collate, num_workers=2, multiprocessing_context=context)
    arrays = {}
    for batch in loader:
        for k, utt_id in enumerate(batch["ids"]):
            n = int(batch["lengths"][k])
            for name in ("mel", "f0", "voiced", "voiced_prob", "energy"):
                arrays[f"{utt_id}/{name}"] = batch[name][k, :n].numpy()
    np.savez(out, **arrays)
    modules = sorted({m.split(".")[0] for m in sys.modules if not m.startswith("_")})
    print(json.dumps({"torch": torch.__version__, "numpy": np.__version__,
                      "zarr": zarr.__version__, "extract": extract.__file__,
                      "modules": modules}))
"""


@pytest.fixture(scope="module")
def loader_python(wheel) -> str:
    """LOADER_PYTHON with our wheel installed without its dependencies."""
    install = subprocess.run([LOADER_PYTHON, "-m", "pip", "install", "-q", "--no-deps",
                              "--force-reinstall", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    return LOADER_PYTHON


@pytest.mark.skipif(not LOADER_PYTHON, reason="TTS_EXTRACT_LOADER_PYTHON is not set "
                                              "(scripts/test.sh sets it)")
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_loader_works_at_the_oldest_torch_numpy_and_zarr_it_supports(mixed_store, loader_python,
                                                                     tmp_path, context):
    script = tmp_path / "read_everything.py"
    script.write_text(READ_EVERYTHING)
    out = tmp_path / "read.npz"
    result = subprocess.run([loader_python, str(script), str(mixed_store), str(out), context],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr
    assert not result.stderr, result.stderr              # no warnings either
    report = json.loads(result.stdout.splitlines()[-1])
    floors = dependency_floors()
    for name in ("torch", "numpy", "zarr"):
        assert report[name].startswith(floors[name]), (name, report[name], floors[name])
    assert "site-packages" in Path(report["extract"]).parts, report["extract"]   # the wheel's
    heavy = {"torchaudio", "nvidia", "librosa", "soundfile", "triton"}   # the job's
    assert not heavy & set(report["modules"]), report["modules"]

    group = zarr.open_group(str(mixed_store), mode="r")
    ids, offsets = [str(v) for v in group["utterances/id"][:]], group["offsets"][:]
    with np.load(out, allow_pickle=False) as read:
        assert sorted(read.files) == sorted(f"{i}/{name}" for i in ids for name in
                                            ("mel", "f0", "voiced", "voiced_prob", "energy"))
        for k, utt_id in enumerate(ids):
            for name in ("mel", "f0", "voiced", "voiced_prob", "energy"):
                np.testing.assert_array_equal(read[f"{utt_id}/{name}"],
                                              group[name][offsets[k]:offsets[k + 1]])


def dependency_floors() -> dict[str, str]:
    """pyproject's lowest versions: {"torch": "2.4", ...} from its "torch>=2.4" lines."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    matches = (re.fullmatch(r"([\w-]+)>=([\w.]+)", d) for d in dependencies)
    return dict(m.groups() for m in matches if m)


@pytest.mark.skipif(not LOADER_PYTHON, reason="TTS_EXTRACT_LOADER_PYTHON is not set "
                                              "(scripts/test.sh sets it)")
def test_the_job_in_a_loader_only_environment_is_one_clear_error(mixed_corpus, loader_python,
                                                                  tmp_path):
    result = subprocess.run([loader_python, "-m", "extract", "run", str(mixed_corpus),
                             str(tmp_path / "out.zarr"), "--device", "cpu"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 2
    assert result.stderr.startswith("tts-extract: error: the extraction job needs torchaudio "
                                    "and DALI"), result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "out.zarr").exists()
