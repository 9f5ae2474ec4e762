"""The wheel pip builds from what Dockerfile.cuda copies (and installs without -e) holds every
module, the kernels and presets under the extract namespace, the demo transcripts and the
console script."""

import zipfile

from conftest import ROOT


def test_the_wheel_holds_the_whole_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"extract/{p.relative_to(ROOT / 'extract')}"
                for p in (ROOT / "extract").rglob("*")
                if p.suffix in (".py", ".csv") and "__pycache__" not in p.parts}
    expected |= {f"extract/kernels/{p.name}" for p in (ROOT / "kernels").glob("*.py")}
    expected |= {f"extract/configs/{p.name}" for p in (ROOT / "configs").iterdir()
                 if p.suffix in (".py", ".yaml")}
    assert len(expected) > 40 and "extract/configs/hifigan.yaml" in expected
    assert expected <= names, sorted(expected - names)
    assert not any(name.startswith("kernels/") for name in names)   # not a top-level `kernels`
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "tts-extract = extract.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
