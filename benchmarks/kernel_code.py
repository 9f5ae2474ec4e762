"""The Viterbi kernel's machine code, no GPU needed: Triton's compiler and ptxas for an NVIDIA
architecture, then cuobjdump (shipped with Triton) on the result.

    python benchmarks/kernel_code.py [--arch 90] [--settings 17x16 1x8 ...] [--json]

For each UNROLLxNUM_WARPS setting at pyin's default size (601 bins, 51 band offsets): registers
a thread, stack bytes (spills), and the band loop's instructions per state and offset (the
innermost loop that adds float64; 4 loads per state and offset) with their mix, and about how
many warp instructions a frame takes for one utterance (the band loop's passes plus the rest of
the frame loop), each also as a ratio to the first setting's.
A count, not a timing: it shows what bounds the loop where the issue rate does. Also the
registers and stack of the trough-weights kernel (kernels/trough_weights.py) at several widths.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from extract.config import C2_HZ, C7_HZ
from extract.features.pyin import pitch_bin_count, transition_width
from extract.kernels import trough_weights
from extract.kernels.viterbi import NUM_WARPS, UNROLL, _viterbi_kernel, kernel_constants

# (unroll, num_warps), the default first: counted here, timed by gpu_check.py
SETTINGS = ((UNROLL, NUM_WARPS), (1, 16), (3, 32), (17, 32), (17, 16), (17, 8), (51, 32))

N_BINS, WIDTH = pitch_bin_count(C2_HZ, C7_HZ), transition_width(35.92, 256, 22050)
BLOCK = triton.next_power_of_2(N_BINS)
CUOBJDUMP = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
ARGUMENT_TYPES = {"log_obs_ptr": "*fp64", "lengths_ptr": "*i64", "weights_ptr": "*fp64",
                  "row_ptr": "*i32", "log_init_and_tiny_ptr": "*fp64", "scratch_ptr": "*fp64",
                  "back_ptr": "*i16", "states_ptr": "*i64", "steps": "i32", "n_bins": "i32",
                  "WIDTH": "constexpr", "OFFSETS": "constexpr", "BLOCK": "constexpr",
                  "UNROLL": "constexpr"}      # as viterbi_triton calls it
TROUGH_ARGUMENT_TYPES = {"first_below_ptr": "*i64", "events_ptr": "*i64", "mass_ptr": "*fp64",
                         "n_events_ptr": "*i64", "norm_ptr": "*fp64", "decay_ptr": "*fp64",
                         "probs_ptr": "*fp64", "rows": "i32", "width": "i32",
                         "event_columns": "i32", "ROWS": "constexpr", "TROUGHS": "constexpr"}


def compile_kernel(arch: int, unroll: int, num_warps: int):
    """Triton's CompiledKernel for sm_<arch> (its .asm holds "ptx" and "cubin")."""
    assert list(ARGUMENT_TYPES) == _viterbi_kernel.arg_names, _viterbi_kernel.arg_names
    source = ASTSource(_viterbi_kernel, ARGUMENT_TYPES,
                       constexprs=kernel_constants(N_BINS, WIDTH, unroll))
    return triton.compile(source, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": num_warps})


def cuobjdump(kernel, option: str) -> str:
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(kernel.asm["cubin"])
        cubin.flush()
        return subprocess.run([CUOBJDUMP, option, cubin.name], capture_output=True, text=True,
                              check=True).stdout


def resource_usage(kernel) -> dict[str, int]:
    """Registers a thread and stack bytes (spills) of a compiled kernel."""
    usage = cuobjdump(kernel, "-res-usage")
    return {"registers": int(re.search(r"REG:(\d+)", usage)[1]),
            "stack_bytes": int(re.search(r"STACK:(\d+)", usage)[1])}


def trough_weights_code(arch: int, troughs: int) -> dict:
    """Registers and stack bytes of the trough-weights kernel at `troughs` (a power of two)."""
    kernel = trough_weights._trough_weights_kernel
    assert list(TROUGH_ARGUMENT_TYPES) == kernel.arg_names, kernel.arg_names
    rows = max(1, trough_weights.ELEMENTS // troughs)
    source = ASTSource(kernel, TROUGH_ARGUMENT_TYPES, constexprs={"ROWS": rows,
                                                                  "TROUGHS": troughs})
    return resource_usage(triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                         options={"num_warps": trough_weights.NUM_WARPS}))


def machine_code(arch: int, unroll: int, num_warps: int) -> dict:
    kernel = compile_kernel(arch, unroll, num_warps)
    loops = backward_branch_loops(cuobjdump(kernel, "-sass"))
    band = min((body for body in loops if "DADD" in body), key=len)
    frame = min((body for body in loops if len(body) > len(band) and "BAR" in body), key=len,
                default=band)          # with a full unroll the band loop is the frame loop
    states = BLOCK // (32 * num_warps)                          # a thread holds
    offsets = round(band.count("LDG") / (4 * states))           # a pass: LLVM may unroll more
    passes = -(-kernel_constants(N_BINS, WIDTH, unroll)["OFFSETS"] // offsets)
    per_frame = len(band) if frame is band else len(frame) + (passes - 1) * len(band)
    return {"ptx_target": kernel.asm["ptx"].split(".target")[1].split()[0],
            **resource_usage(kernel),
            "band_loop_per_state_and_offset": round(len(band) / (offsets * states), 1),
            "band_loop_mix": dict(collections.Counter(band).most_common(8)),
            "warp_instructions_per_frame": per_frame * num_warps}


def backward_branch_loops(sass: str) -> list[list[str]]:
    """Each loop of the SASS listing (a branch back to an earlier address) as its opcodes."""
    code = []
    for line in sass.splitlines():
        match = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)([^;]*);", line)
        if match:
            code.append((int(match[1], 16), match[2].split(".")[0], match[3]))
    where = {address: i for i, (address, _, _) in enumerate(code)}
    loops = []
    for i, (address, opcode, operands) in enumerate(code):
        target = re.search(r"0x([0-9a-f]+)", operands) if opcode == "BRA" else None
        if target and int(target[1], 16) < address and int(target[1], 16) in where:
            loops.append([op for _, op, _ in code[where[int(target[1], 16)]:i + 1]])
    return loops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--settings", nargs="+", default=[f"{u}x{w}" for u, w in SETTINGS],
                        help="UNROLLxNUM_WARPS settings, the first compared with the rest")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        sys.exit("run without TRITON_INTERPRET=1: it compiles the kernel for a GPU")
    results = {}
    for setting in args.settings:
        unroll, warps = map(int, setting.split("x"))
        results[setting] = machine_code(args.arch, unroll, warps)
    troughs = {width: trough_weights_code(args.arch, width) for width in (32, 128, 256)}
    if args.json:
        print(json.dumps({**results, "trough_weights": troughs}))
        return
    first = results[args.settings[0]]["warp_instructions_per_frame"]
    print(f"sm_{args.arch}, {N_BINS} bins, {WIDTH} band offsets; the kernel's default is "
          f"{UNROLL}x{NUM_WARPS}")
    for setting, r in results.items():
        print(f"unroll x warps {setting:>6}: {r['registers']:3d} registers, stack "
              f"{r['stack_bytes']:3d} B, band loop {r['band_loop_per_state_and_offset']:5.1f} "
              f"instructions per state and offset, {r['warp_instructions_per_frame']:6d} warp "
              f"instructions a frame ({r['warp_instructions_per_frame'] / first:.2f}x "
              f"{args.settings[0]})\n    band loop mix: {r['band_loop_mix']}")
    for width, r in troughs.items():
        print(f"trough weights, {width:3d} troughs wide: {r['registers']:3d} registers, stack "
              f"{r['stack_bytes']:3d} B")


if __name__ == "__main__":
    main()
