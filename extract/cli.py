"""Command line: tts-extract run | check | inspect | presets | export | demo.

Exit status of `run`: 0 when every utterance was extracted; 3 when the store is complete but
some items were skipped (each named in the summary and in the store; --allow-skipped makes
this 0); 2 for errors that stop the job (one line, `tts-extract: error: ...`); 130 or 143 when
SIGINT or SIGTERM stopped it (rerun with --resume). `check` exits 3 when a run would skip
items, else 0 (or 2); `inspect --against` and `presets NAME --against` 1 when a mel setting
differs from the toolkit config's.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from extract.config import DEFAULT_PRESET
from extract.input.corpus import MAX_DURATION_S
from extract.progress import format_audio_length
from extract.store.layout import SHARD_FRAMES
from extract.versions import version_line

EXIT_OK, EXIT_DIFFERS, EXIT_FATAL, EXIT_SKIPPED = 0, 1, 2, 3
AGAINST_HELP = ("a vocoder's or acoustic model's own config file (JSON or YAML): compare its mel "
                "settings with these; exit status 1 when one differs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tts-extract",
        description="Extract log-mel, pitch and energy from a TTS corpus into one Zarr store.")
    parser.add_argument("--version", action=PrintVersion,
                        help="print our version and our dependencies' and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="extract features from a corpus",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status:\n"
               f"  {EXIT_OK}        every utterance extracted (or some skipped, with "
               "--allow-skipped)\n"
               f"  {EXIT_SKIPPED}        the store is complete, but some items were skipped "
               "(listed)\n"
               f"  {EXIT_FATAL}        an error stopped the job (one line: tts-extract: error: "
               "...)\n"
               "  130/143  stopped by SIGINT/SIGTERM; rerun with --resume")
    run.add_argument("dataset", help="folder with metadata.csv and wavs/, or the metadata file")
    run.add_argument("out", help="output store, e.g. features.zarr")
    run.add_argument("--preset", default=DEFAULT_PRESET,
                     help="preset name (see `tts-extract presets`) or a YAML file")
    run.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                     help="where the features are computed (default auto: cuda when torch "
                          "sees a GPU)")
    run.add_argument("--batch-size", type=int, default=None, metavar="N",
                     help="utterances per batch (default 32 on the CPU; on a GPU 256, or "
                          "fewer to fit its memory: 128 on 24 GB); fewer where they are longer "
                          "than 30 s, so a batch holds at most N x 30 s")
    run.add_argument("--limit", type=int, default=None, metavar="N",
                     help="only the first N utterances")
    run.add_argument("--overwrite", action="store_true", help="replace an existing store")
    run.add_argument("--resume", action="store_true",
                     help="finish an interrupted run of the same job, keeping its work")
    run.add_argument("--allow-skipped", action="store_true",
                     help="exit 0 even if some utterances were skipped")
    run.add_argument("--max-duration", type=float, default=MAX_DURATION_S, metavar="SECONDS",
                     help=f"skip longer files (default {MAX_DURATION_S:g})")
    run.add_argument("--shard-frames", type=int, default=SHARD_FRAMES, metavar="N",
                     help="frames per Zarr shard, the unit of writing and resuming "
                          f"(default {SHARD_FRAMES})")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    check = commands.add_parser("check", help="read a corpus's metadata and audio headers and "
                                              "say what a run would extract and skip")
    check.add_argument("dataset", help="folder with metadata.csv and wavs/, or the metadata file")
    check.add_argument("--preset", default=DEFAULT_PRESET,
                       help="preset name or YAML file (its frame rule and minimum length)")
    check.add_argument("--max-duration", type=float, default=MAX_DURATION_S, metavar="SECONDS",
                       help=f"skip longer files (default {MAX_DURATION_S:g})")
    check.add_argument("--allow-skipped", action="store_true",
                       help="exit 0 even if some utterances would be skipped")

    inspect = commands.add_parser("inspect", help="describe a store")
    inspect.add_argument("store", help="a store that tts-extract run wrote")
    inspect.add_argument("--against", metavar="CONFIG", help=AGAINST_HELP)

    presets = commands.add_parser("presets", help="list the presets, or print one in full")
    presets.add_argument("preset", nargs="?",
                         help="a preset name or YAML file: print its every field, defaults "
                              "included, as a preset file")
    presets.add_argument("--against", metavar="CONFIG", help=AGAINST_HELP)

    export = commands.add_parser("export", help="write a store in a toolkit's own file layout")
    export.add_argument("store", help="a finished store that tts-extract run wrote")
    export.add_argument("--to", required=True, choices=("fastpitch", "nemo", "coqui"),
                        help="fastpitch: DeepLearningExamples mels/ and pitch/ .pt files; "
                             "nemo: NeMo's per-feature .npy files and feature_stats.json; "
                             "coqui: Coqui TTS's F0 cache (its f0_cache_path)")
    export.add_argument("dir", help="output folder")
    export.add_argument("--dataset-name", default="",
                        help="coqui: the dataset config's dataset_name (default: empty, as "
                             "Coqui's LJSpeech recipes leave it)")
    export.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    export.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = commands.add_parser("demo", help="write the bundled demo corpus")
    demo.add_argument("folder", help="where to write metadata.csv and wavs/")
    return parser


class PrintVersion(argparse.Action):
    """--version: one unwrapped line, read only when asked for."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(args)
    except KeyboardInterrupt:       # Ctrl-C outside extraction (imports, headers, exports)
        print("tts-extract: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def run_command(args: argparse.Namespace) -> int:
    """The command's exit status; its errors as one line each."""
    from extract.config import UnknownPresetError
    from extract.signals import JobInterrupted

    try:
        return COMMANDS[args.command](args)
    except JobInterrupted as e:
        print(f"tts-extract: {e}", file=sys.stderr)
        return 128 + e.signum
    except BrokenPipeError:         # the reader went away (`| head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # for the exit flush
        return 128 + signal.SIGPIPE
    except (ValueError, RuntimeError, OSError) as e:   # ours derive from the first two
        print(f"tts-extract: error: {e}", file=sys.stderr)
        if isinstance(e, UnknownPresetError):
            print_presets(sys.stderr)
        return EXIT_FATAL


def cmd_run(args) -> int:
    from extract.job import run_job

    result = run_job(args.dataset, args.out, preset=args.preset, device=args.device,
                     batch_size=args.batch_size, limit=args.limit, overwrite=args.overwrite,
                     resume=args.resume, max_duration_s=args.max_duration,
                     shard_frames=args.shard_frames,
                     show_progress=not args.quiet)
    from extract.loader.feature_store import FeatureStore

    if not result.main:
        return EXIT_SKIPPED if result.rejected and not args.allow_skipped else EXIT_OK
    if result.already_complete:
        print(f"{result.path} is already complete; nothing to do")
    else:
        print(f"done: {result.utterances} utterances ({result.extracted} extracted by this run), "
              f"{format_audio_length(result.audio_s)} of audio in {result.elapsed_s:.1f} s "
              f"({result.times_real_time:.0f}x real time on {result.device})")
    print(FeatureStore(result.path).describe())
    if result.rejected:
        return EXIT_OK if args.allow_skipped else EXIT_SKIPPED
    return EXIT_OK


def cmd_check(args) -> int:
    from extract.config import load_preset
    from extract.input.corpus import load_corpus
    from extract.plan import data_notes, describe_plan, plan, require_positive

    require_positive("--max-duration", args.max_duration)
    preset = load_preset(args.preset)
    corpus = load_corpus(args.dataset, show_progress=True)
    utterances, counts, rejected = plan(corpus, preset, args.max_duration)
    print(describe_plan(corpus, preset, utterances, counts, rejected))
    for note in data_notes(preset, utterances):
        print(note, file=sys.stderr)
    return EXIT_SKIPPED if rejected and not args.allow_skipped else EXIT_OK


def cmd_inspect(args) -> int:
    from extract.loader.feature_store import FeatureStore

    store = FeatureStore(args.store)
    if args.against:
        return print_comparison(f"{args.store} (preset {store.config['name']})", store.config,
                                args.against)
    print(store.describe(shown_rejections=None))
    return 0


def cmd_presets(args) -> int:
    from extract.config import load_preset

    if args.preset is None:
        if args.against:
            return print_matching_presets(args.against)
        print_presets(sys.stdout)
        return EXIT_OK
    preset = load_preset(args.preset)
    if args.against:
        return print_comparison(f"preset {preset.name}", preset.to_dict(), args.against)
    print(preset.to_yaml(), end="")
    return EXIT_OK


def print_matching_presets(against: str) -> int:
    """The presets whose mel settings agree with a toolkit's config file; the exit status."""
    from extract.config import load_preset, preset_names
    from extract.toolkit_config import compare_settings, settings_in_file

    found = settings_in_file(against)
    presets = [load_preset(name) for name in preset_names()]
    matching = [p for p in presets if not compare_settings(p.to_dict(), found)[1]]
    if not matching:
        print(f"no preset agrees with {against}'s mel settings: tts-extract presets NAME "
              f"--against {against} shows how one differs; a YAML file with `base: NAME` and "
              "the settings that differ makes your own (README: Presets)")
        return EXIT_DIFFERS
    print(f"presets whose mel settings agree with {against} (pick the one whose toolkit made "
          "it: the padding, window, magnitude and log are in the toolkit's code):")
    for preset in matching:
        print(f"  {preset.name:16s} {preset.mirrors}")
    return EXIT_OK


def print_comparison(ours: str, config: dict, against: str) -> int:
    """The mel settings of `config` (ours: what it is) against a toolkit's config file; the
    exit status."""
    from extract.toolkit_config import compare_with_config

    lines, differing = compare_with_config(config, against)
    print(f"{ours} against {against}:", *lines, sep="\n")
    mirrors = f" ({config['mirrors']})" if config.get("mirrors") else ""
    print(f"a config file gives only these; the padding, window, magnitude, log and frame count "
          f"are in the toolkit's code, which preset {config['name']} mirrors{mirrors}")
    if differing:
        print(f"{', '.join(differing)} {'differs' if len(differing) == 1 else 'differ'}: a model "
              "trained on the config's mels would be given other ones; tts-extract presets "
              f"--against {against} lists the presets that agree, and tts-extract presets NAME "
              "prints one in full, to edit as your own")
        return EXIT_DIFFERS
    print(f"every setting {against} gives agrees")
    return EXIT_OK


def print_presets(stream) -> None:
    from extract.config import available_presets

    for name, description in available_presets().items():
        print(f"{name:16s} {description}", file=stream)


def cmd_export(args) -> int:
    from extract.export import (RECIPE_PRESETS, export_store, fastpitch_train_flags,
                                open_for_export)

    store = open_for_export(args.store, args.to)
    preset = store.config["name"]
    if preset != RECIPE_PRESETS[args.to]:
        print(f"note: {args.store} uses preset {preset!r}; {args.to}'s recipe computes its "
              f"features as preset {RECIPE_PRESETS[args.to]!r} does", file=sys.stderr)
    count = export_store(store, args.to, args.dir, args.overwrite, args.dataset_name,
                         show_progress=not args.quiet)
    print(f"exported {count} utterances to {args.dir} ({args.to} layout)")
    if args.to == "fastpitch":
        print(fastpitch_train_flags(store))
    return EXIT_OK


def cmd_demo(args) -> int:
    from extract.demo import write_demo_corpus

    folder = write_demo_corpus(Path(args.folder))
    print(f"demo corpus written to {folder}")
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "inspect": cmd_inspect, "presets": cmd_presets,
            "export": cmd_export, "demo": cmd_demo}
