"""The wheel pip builds from what Dockerfile.cuda copies (and installs without -e) holds every
module, the kernels and presets under the extract namespace, the demo transcripts and the
console script; and every module imports, its docstring examples holding."""

import doctest
import importlib
import pkgutil
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


def test_every_module_imports_and_its_docstring_examples_hold():
    """Each module of the installed package (kernels and presets included) imports, and the
    `>>>` examples in docstrings give what they show."""
    names = []
    for package in ("extract", "extract.kernels", "extract.configs"):   # the last two mapped in
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [m.name for m in pkgutil.walk_packages(path, f"{package}.")
                  if not m.name.endswith(".__main__")]                  # that one runs the CLI
    assert {"extract.kernels.viterbi", "extract.configs", "extract.plan"} <= set(names)
    results = [doctest.testmod(importlib.import_module(name)) for name in names]
    assert sum(r.attempted for r in results) >= 3
    assert not [name for name, r in zip(names, results) if r.failed]
