import dataclasses
import re
import subprocess
import sys

import pytest
import yaml

from extract import cli as cli_module
from extract.config import C7_HZ
from extract.loader import FeatureStore
from extract.versions import job_environment_problem

from conftest import ROOT, write_corpus


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "extract", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "corpus"
    result = cli("demo", folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_run_and_inspect_the_demo_corpus(demo_corpus, tmp_path):
    out = tmp_path / "demo.zarr"
    result = cli("run", demo_corpus, out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "done: 100 utterances" in result.stdout and "x real time" in result.stdout
    assert "utt/s" in result.stderr and "ETA" in result.stderr          # the progress line
    assert "\n  time by stage: " in result.stdout and "write " in result.stdout
    store = FeatureStore(out)
    run = store.attrs["run"]
    assert set(run["stage_s"]) == {"read corpus", "open output", "create store", "decode",
                                   "resample",
                                   "spectrogram", "pitch frames", "pitch (pyin observations)",
                                   "pitch (pyin Viterbi)", "to host", "write"}
    assert all(s >= 0 for s in run["stage_s"].values())
    assert run["stage_s"]["pitch (pyin Viterbi)"] > 0
    assert sum(run["stage_s"].values()) <= run["elapsed_s"]
    assert len(store) == 100 and store.ids[0] == "llm_intro_0"
    assert store["llm_intro_0"]["text"].startswith("So here we go")
    assert 0.2 < store.stats["f0_voiced_frames"] / store.stats["frames"] < 0.9
    inspect = cli("inspect", out)
    assert inspect.returncode == 0 and "utterances: 100" in inspect.stdout
    assert "written on cpu in " in inspect.stdout and "time by stage: " in inspect.stdout
    bigvgan_v2 = tmp_path / "bigvgan.json"          # the 22 kHz BigVGAN v2's: fmax null
    bigvgan_v2.write_text('{"sampling_rate": 22050, "n_fft": 1024, "num_mels": 80, '
                          '"hop_size": 256, "win_size": 1024, "fmin": 0, "fmax": null}')
    against = cli("inspect", out, "--against", bigvgan_v2)
    assert against.returncode == 1, against.stderr
    assert against.stdout.startswith(f"{out} (preset hifigan) against {bigvgan_v2}:\n")
    assert "  fmax 8000: fmax null (= 11025) DIFFERS\n" in against.stdout
    estimate = re.search(r"a store of about ([\d.]+) MB", cli("check", demo_corpus).stdout)
    on_disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shown = re.search(r"arrays \(([\d.]+) MB of frames\)", inspect.stdout)
    for size in (estimate, shown):
        assert abs(float(size[1]) - on_disk / 1e6) < 0.6                 # within its rounding

    again = cli("run", demo_corpus, out, "--device", "cpu", "--limit", "3")
    assert again.returncode == 2
    assert f"{out} already holds a finished store; pass --overwrite" in again.stderr
    assert len(FeatureStore(out)) == 100                                # untouched
    limited = cli("run", demo_corpus, out, "--device", "cpu", "--limit", "3", "--overwrite")
    assert limited.returncode == 0 and len(FeatureStore(out)) == 3
    assert f"--overwrite: deleting the finished store in {out}" in limited.stderr


@pytest.mark.parametrize("args,message", [
    (["run", "{tmp}/missing", "{tmp}/o.zarr"], "does not exist"),
    (["run", "{demo}", "{tmp}/o.zarr", "--batch-size", "0"], "--batch-size must be positive"),
    (["run", "{demo}", "{tmp}/o.zarr", "--shard-frames", "0"], "--shard-frames must be positive"),
    (["run", "{demo}", "{tmp}/o.zarr", "--limit", "0"], "--limit must be positive"),
    (["run", "{demo}", "{tmp}/o.zarr", "--max-duration", "nan"], "--max-duration must be positive"),
    (["check", "{demo}", "--max-duration", "nan"], "--max-duration must be positive, got nan"),
    (["check", "{demo}", "--max-duration", "-1"], "--max-duration must be positive, got -1"),
    (["run", "{demo}", "{tmp}/o.zarr", "--overwrite", "--resume"], "exclude each other"),
    (["run", "{demo}", "{demo}/metadata.csv"], "metadata.csv exists and is not a folder"),
    (["inspect", "{tmp}"], "not a Zarr store"),
    (["inspect", "{tmp}/missing.zarr"], "missing.zarr does not exist"),
    (["export", "{tmp}/missing.zarr", "--to", "nemo", "{tmp}/nemo"], "missing.zarr does not exist"),
])
def test_errors_are_one_clear_line(demo_corpus, tmp_path, args, message):
    result = cli(*[a.format(tmp=tmp_path, demo=demo_corpus) for a in args])
    assert result.returncode == 2
    assert result.stderr.startswith("tts-extract: error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.zarr").exists()


def test_presets_lists_every_preset_and_an_unknown_name_prints_the_list(demo_corpus, tmp_path):
    from extract.config import preset_dir

    result = cli("presets")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines[0].startswith("hifigan ")
    assert sorted(line.split()[0] for line in lines) == \
        sorted(p.stem for p in preset_dir().glob("*.yaml"))
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)       # each has a description
    unknown = cli("run", demo_corpus, tmp_path / "o.zarr", "--preset", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("tts-extract: error: unknown preset 'nope'; known presets:")
    assert unknown.stderr.strip().splitlines()[1:] == lines


def test_presets_prints_one_in_full_as_a_file_that_loads_back(tmp_path, capsys):
    from extract.config import PitchConfig, Preset, load_preset, preset_names

    fields = {f.name for f in dataclasses.fields(Preset)} - {"name"}
    pitch_fields = {f.name for f in dataclasses.fields(PitchConfig)}
    for name in preset_names():
        assert cli_module.main(["presets", name]) == 0
        text = capsys.readouterr().out
        printed = yaml.safe_load(text)
        assert set(printed) == fields and set(printed["pitch"]) == pitch_fields  # defaults too
        (tmp_path / f"{name}.yaml").write_text(text)
        assert load_preset(str(tmp_path / f"{name}.yaml")) == load_preset(name)
        assert load_preset(name).hop_length == 256
        centre = 0 if load_preset(name).padding.endswith("_center") else 128
        assert text.startswith(f"# preset {name}: num_samples // hop_length "
                               f"{'+ 1 ' if centre == 0 else ''}frames, frame t centred at "
                               f"sample {centre} + t * 256\n")
    (tmp_path / "low.yaml").write_text("base: hifigan\npitch:\n  fmin: 50.0\n")
    assert cli_module.main(["presets", str(tmp_path / "low.yaml")]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["pitch"]["fmin"] == 50.0 and printed["pitch"]["fmax"] == C7_HZ
    assert printed["hop_length"] == 256 and printed["peak_normalize"] == 0.95


def test_ctrl_c_outside_extraction_is_one_line_and_status_130(monkeypatch, capsys):
    """Before extraction starts (reading a large corpus's headers) or in an export, SIGINT
    arrives as KeyboardInterrupt: no traceback, exit status 128 + SIGINT."""
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_module.COMMANDS, "presets", interrupted)
    assert cli_module.main(["presets"]) == 130
    assert capsys.readouterr().err == "tts-extract: interrupted\n"


def test_check_and_run_note_mel_bands_without_an_fft_bin(demo_corpus, tmp_path):
    dense = tmp_path / "dense.yaml"
    dense.write_text((ROOT / "configs" / "hifigan.yaml").read_text()
                     .replace("n_mels: 80", "n_mels: 400"))
    for args in (["check", demo_corpus], ["run", demo_corpus, tmp_path / "o.zarr", "--quiet",
                                          "--limit", "2", "--device", "cpu"]):
        result = cli(*args, "--preset", dense)
        assert result.returncode == 0, result.stderr
        assert re.search(r"note: preset dense: \d+ of 400 mel bands cover no FFT bin",
                         result.stderr)


def check_and_run(corpus, out) -> list[str]:
    """The stderr of `check` and of `run` on the CPU, each of which must succeed."""
    results = [cli("check", corpus), cli("run", corpus, out, "--quiet", "--device", "cpu")]
    for result in results:
        assert result.returncode == 0, result.stderr
    return [result.stderr for result in results]


def test_check_and_run_note_audio_sampled_below_the_mels_top(demo_corpus, tmp_path):
    corpus = write_corpus(tmp_path / "c", [("narrow", 1.0, 8000, 1, "pcm16"),
                                           ("wide", 1.0, 22050, 1, "pcm16")])
    for stderr in check_and_run(corpus, tmp_path / "o.zarr"):
        assert ("note: 1 of 2 utterances are sampled below 16000 Hz (lowest 8000 Hz), so their "
                "log-mel holds no signal above 4000 Hz, though preset hifigan's mels reach "
                "8000 Hz") in stderr
    demo = cli("check", demo_corpus)            # 22.05, 44.1 and 48 kHz: nothing to note
    assert demo.returncode == 0 and "note:" not in demo.stderr


def test_check_and_run_note_lines_without_a_speaker_among_named_ones(tmp_path):
    corpus = write_corpus(tmp_path / "c", [(name, 0.5, 22050, 1, "pcm16") for name in "abcd"])
    metadata = corpus / "metadata.csv"
    lines = metadata.read_text().splitlines()
    metadata.write_text("\n".join([lines[0], lines[1] + "|p1", lines[2], lines[3] + "|p2"]) + "\n")
    for stderr in check_and_run(corpus, tmp_path / "o.zarr"):
        assert ("note: 2 of 4 utterances name no speaker (metadata lines 1, 3) while the others "
                "do; they are kept as one speaker named ''") in stderr
    assert sorted(FeatureStore(tmp_path / "o.zarr").stats["speakers"]) == ["", "p1", "p2"]
    named = metadata.read_text().replace("|Normalized a.\n", "|Normalized a.|p1\n")
    metadata.write_text(named.replace("|Normalized c.\n", "|Normalized c.|p2\n"))
    assert "note:" not in cli("check", corpus).stderr


def test_check_notes_lines_without_text(tmp_path):
    corpus = write_corpus(tmp_path / "c", [(name, 0.5, 22050, 1, "pcm16") for name in "abc"])
    metadata = corpus / "metadata.csv"
    assert "note:" not in cli("check", corpus).stderr
    metadata.write_text("a|Some text.|\nb| |\nc||  \n")
    result = cli("check", corpus)
    assert result.returncode == 0, result.stderr
    assert ("note: 2 of 3 utterances have no text (metadata lines 2, 3); their features are "
            "stored with an empty text") in result.stderr


def test_check_and_run_note_ids_that_name_an_earlier_lines_file(tmp_path):
    corpus = write_corpus(tmp_path / "c", [(name, 0.5, 22050, 1, "pcm16") for name in "ab"])
    metadata = corpus / "metadata.csv"
    assert "note:" not in cli("check", corpus).stderr
    with metadata.open("a") as f:
        f.write("x/../b|Again.|\n./a|Once more.|\n")
    for stderr in check_and_run(corpus, tmp_path / "o.zarr"):
        assert ("note: 2 utterance(s) name an audio file that an earlier line names too (line 3 "
                "(x/../b) as line 2 (b); line 4 (./a) as line 1 (a)); each is extracted and "
                "stored under its own id") in stderr
    store = FeatureStore(tmp_path / "o.zarr")
    assert store.ids == ("a", "b", "x/../b", "./a")
    assert store["./a"]["mel"].equal(store["a"]["mel"])


def test_run_notes_too_little_free_disk_space_and_still_runs(tmp_path, monkeypatch, capsys):
    import extract.store.output
    from extract.job import run_job

    corpus = write_corpus(tmp_path / "c", [("a", 1.0, 22050, 1, "pcm16")])
    usage = extract.store.output.shutil.disk_usage
    monkeypatch.setattr(extract.store.output.shutil, "disk_usage",
                        lambda path: usage(path)._replace(free=2500))
    run_job(corpus, tmp_path / "o.zarr", device="cpu", show_progress=False)
    frames = int(FeatureStore(tmp_path / "o.zarr").lengths.sum())
    # per frame: mel 80 float32, f0, voiced_prob and energy float32, voiced bool
    assert (f"note: the store needs about {frames * (80 * 4 + 4 + 1 + 4 + 4) / 1e3:.0f} kB "
            f"more, and the filesystem of {tmp_path / 'o.zarr'} has 2.5 kB free: the job will "
            "stop when the disk is full") in capsys.readouterr().err


def test_a_closed_output_pipe_stops_quietly():
    """`tts-extract presets | head -1`: no error message when the reader has gone."""
    child = subprocess.Popen([sys.executable, "-m", "extract", "presets"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    child.stdout.close()                                  # before it writes: EPIPE
    stderr = child.stderr.read()
    assert child.wait() == 141 and stderr == ""           # 128 + SIGPIPE, as a shell reports


def test_the_readme_usage_names_every_command_and_flag():
    """Each command's lines in the README's usage block (its own line and the indented ones
    after it) name every flag its --help lists."""
    from extract.cli import build_parser

    usage = (ROOT / "README.md").read_text().split("\n## Use\n")[1].split("```")[1]
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, command in commands.items():
        lines = re.search(rf"^tts-extract {name} .*(\n +.*)*", usage, re.MULTILINE)
        assert lines, f"the README's usage block lacks `tts-extract {name}`"
        flags = set(re.findall(r"--[a-z][a-z-]*", command.format_help())) - {"--help"}
        missing = {flag for flag in flags if flag not in lines.group(0)}
        assert not missing, f"the README's `tts-extract {name}` usage lacks {sorted(missing)}"


def test_version_names_ours_and_each_dependency():
    from importlib import metadata

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.count("\n") == 1, result.stderr
    assert result.stdout.startswith(f"tts-extract {metadata.version('tts-extract')} (")
    for name in ("torch", "torchaudio", "nvidia-dali-cuda130", "numpy", "zarr"):
        assert f"{name} {metadata.version(name)}" in result.stdout


JOB_READY = {"torch": "2.11.0+cu130", "torchaudio": "2.11.0"}


@pytest.mark.parametrize("versions,dali,problem", [
    (JOB_READY, True, None),
    ({"torch": "2.12.1", "torchaudio": "2.12.0"}, True, None),
    ({"torch": "2.4.1", "torchaudio": "not installed"}, False,
     "needs torchaudio and DALI (nvidia-dali-cuda130), which this environment lacks"),
    (JOB_READY, False, "needs DALI (nvidia-dali-cuda130),"),
    ({"torch": "2.10.0", "torchaudio": "2.10.0"}, True, "found torch 2.10.0 and"),
    ({"torch": "2.12.0", "torchaudio": "2.11.0"}, True,
     "the same release, found torch 2.12.0 and torchaudio 2.11"),
])
def test_the_job_names_the_dependencies_it_lacks(versions, dali, problem):
    found = job_environment_problem(versions, dali)
    if problem is None:
        assert found is None, found
    else:
        assert problem in found and found.endswith("pip install torch==2.11.0 "
                                                   "torchaudio==2.11.0 nvidia-dali-cuda130")


@pytest.mark.parametrize("args", [["presets"], ["--help"], ["--version"], ["demo", "{tmp}"]])
def test_commands_that_need_no_features_start_without_torch(args, tmp_path):
    """Help, the preset list and the demo corpus come back at once: torch (about a second to
    import) loads only for commands that use it."""
    args = [arg.format(tmp=tmp_path / "demo") for arg in args]
    code = ("import sys\nfrom extract.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert result.stderr.strip().endswith("False"), result.stderr


def test_every_error_class_of_ours_is_one_the_cli_reports_in_one_line():
    """The CLI catches ValueError, RuntimeError and OSError (and JobInterrupted); an error class
    outside them would end a command in a traceback."""
    import importlib
    import inspect
    import pkgutil

    import extract
    from extract.decode.dali import DecoderOutOfMemory   # explain_out_of_memory rewords it
    from extract.signals import JobInterrupted

    modules = [importlib.import_module(m.name)
               for m in pkgutil.walk_packages(extract.__path__, "extract.")
               if m.name != "extract.__main__"]
    errors = {cls for module in modules for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, BaseException) and cls.__module__.startswith("extract.")}
    assert len(errors) >= 8
    outside = {cls.__name__ for cls in errors - {JobInterrupted, DecoderOutOfMemory}
               if not issubclass(cls, (ValueError, RuntimeError, OSError))}
    assert not outside


def test_the_package_version_is_the_distribution_version():
    import tomllib

    import extract

    with open(ROOT / "pyproject.toml", "rb") as f:
        assert extract.__version__ == tomllib.load(f)["project"]["version"]


def test_demo_never_overwrites_a_dataset(demo_corpus, tmp_path):
    """`demo` writes into an empty or new folder, or rewrites an earlier demo corpus (the same
    bytes); any other folder, or a file, is refused and left as it was."""
    again = cli("demo", demo_corpus)
    assert again.returncode == 0, again.stderr
    dataset = tmp_path / "mine"
    (dataset / "wavs").mkdir(parents=True)
    (dataset / "metadata.csv").write_text("llm_intro_0.wav|my own words|\n")
    (dataset / "wavs" / "llm_intro_0.wav").write_bytes(b"my own audio")
    for target in (dataset, dataset / "metadata.csv"):
        result = cli("demo", target)
        assert result.returncode == 2
        assert result.stderr == (f"tts-extract: error: {target} exists and is neither an empty "
                                 "folder nor an earlier demo corpus; name a new folder for the "
                                 "demo corpus\n")
    assert (dataset / "metadata.csv").read_text() == "llm_intro_0.wav|my own words|\n"
    assert (dataset / "wavs" / "llm_intro_0.wav").read_bytes() == b"my own audio"
