"""The wheel pip builds from what Dockerfile.cuda copies (and installs without -e) holds every
module, the kernels and presets under the extract namespace, the demo transcripts and the
console script."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("pyproject.toml", "README.md", "extract", "kernels", "configs")   # Dockerfile.cuda


def test_the_wheel_holds_the_whole_package(tmp_path):
    source = tmp_path / "source"          # no build/ or egg-info left by a local install
    source.mkdir()
    for name in COPIED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(tmp_path), str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = tmp_path.glob("tts_extract-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"extract/{p.relative_to(source / 'extract')}"
                for p in (source / "extract").rglob("*") if p.suffix in (".py", ".csv")}
    expected |= {f"extract/kernels/{p.name}" for p in (source / "kernels").glob("*.py")}
    expected |= {f"extract/configs/{p.name}" for p in (source / "configs").iterdir()
                 if p.suffix in (".py", ".yaml")}
    assert len(expected) > 40 and "extract/configs/hifigan.yaml" in expected
    assert expected <= names, sorted(expected - names)
    assert not any(name.startswith("kernels/") for name in names)   # not a top-level `kernels`
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "tts-extract = extract.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
