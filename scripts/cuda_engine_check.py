#!/usr/bin/env python3
"""Check the llama.cpp engine where it runs on a GPU: backend, offload, state restore, cancel, flash attention.

`scripts/cuda_check.sh` runs it after the CUDA build, on the synthetic Qwen 3.5 models; it also
runs alone on any GGUF. One PASS/FAIL line per check and model; every figure goes to --json.

    scripts/cuda_engine_check.py --json out/cuda_check.json models/synthetic-qwen3.5-0.8b-Q4_K_M.gguf
    scripts/cuda_engine_check.py --report out/cuda.json --json out/cuda_check.json   # merge the bench's figures

What each check holds the engine to (the same promises tests/test_engine.py checks on the CPU):
  backend   `LlamaEngine.backend` is the expected one (cuda), and llama.cpp sees a GPU device
  offload   llama.cpp's own log says every layer went to the GPU ("offloaded N/N layers")
  flash     the engine leaves flash attention to llama.cpp on a GPU (auto, -1) and turns it off on the CPU
  restore   a follow-up greedy reply from the restored checkpoint equals a fresh evaluation of the same prompt
  cancel    a reply stops within one token of its cancel event (the TUI's Esc and Ctrl+C set it)
Exit status: 0 when every check passed, 1 when one failed, 2 for bad arguments or a model that does not load.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeassist.engine import Done, GenerationOptions, Message, Text, Thinking  # noqa: E402
from edgeassist.engine.llama import LlamaEngine  # noqa: E402
from edgeassist.engine.log import LOG  # noqa: E402
from edgeassist.errors import EdgeAssistError  # noqa: E402

GREEDY = GenerationOptions(temperature=0, max_tokens=24)
"""The greedy reply tests/test_engine.py compares (a restored state against a fresh evaluation)."""
N_CTX = 1024
CANCEL_AFTER = 3
"""Events the consumer takes before it cancels (as test_cancel_stops_within_one_token)."""


# -- llama.cpp's log, as the engine keeps it ---------------------------------------------------------------------------


def logged_since(mark: int) -> str:
    """llama.cpp's log lines (INFO and above) since `LOG.count` was `mark`: the engine keeps them in a ring."""
    lines, _ = LOG.since(mark)
    return "\n".join(line.text for line in lines if line.source == "llama.cpp")


def parse_load_log(text: str) -> dict[str, Any]:
    """Offloaded layers, buffer sizes per device and the fused operations llama.cpp chose, from its log."""
    offload = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", text)
    buffers: dict[str, dict[str, float]] = {}
    for device, kind, mib in re.findall(r"(\S+) (model|KV|RS|compute) buffer size =\s*([\d.]+) MiB", text):
        buffers.setdefault(kind.lower(), {})
        buffers[kind.lower()][device] = buffers[kind.lower()].get(device, 0.0) + float(mib)
    probes = re.findall(r"(?m)^\w+: (Flash Attention|fused .+?) (enabled|not supported)", text)
    fused = {name: state for name, state in probes}
    return {
        "offloaded_layers": int(offload[-1][0]) if offload else None,
        "offloadable_layers": int(offload[-1][1]) if offload else None,
        "buffers_mib": buffers,
        "fused_ops": fused,
    }


# -- memory --------------------------------------------------------------------------------------


def nvidia_smi() -> list[dict[str, Any]]:
    """Each GPU's name, memory used and total (MiB) and compute capability; [] without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    query = "index,name,memory.used,memory.total,compute_cap"
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 5 and parts[2].isdigit():
            gpus.append(
                {"index": int(parts[0]), "name": parts[1], "used_mib": int(parts[2]), "total_mib": int(parts[3]),
                 "compute_cap": parts[4]}
            )  # fmt: skip
    return gpus


def device_memory() -> dict[str, dict[str, int]]:
    """Free and total bytes of each non-CPU device, as ggml's backend reports them (cudaMemGetInfo on CUDA)."""
    try:
        from llama_cpp import _ctypes_extensions, _ggml

        base = _ctypes_extensions.load_shared_library("ggml-base", _ggml.libggml_base_path)
        lib = _ggml.libggml
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        base.ggml_backend_dev_name.restype = ctypes.c_char_p
        base.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
        base.ggml_backend_dev_type.restype = ctypes.c_int
        base.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
        base.ggml_backend_dev_memory.restype = None
        size = ctypes.POINTER(ctypes.c_size_t)
        base.ggml_backend_dev_memory.argtypes = [ctypes.c_void_p, size, size]
    except (ImportError, OSError, AttributeError):
        return {}
    out = {}
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        if base.ggml_backend_dev_type(dev) == 0:  # GGML_BACKEND_DEVICE_TYPE_CPU
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        base.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
        out[base.ggml_backend_dev_name(dev).decode()] = {"free_bytes": free.value, "total_bytes": total.value}
    return out


def used_mib(gpus: list[dict[str, Any]]) -> int | None:
    """Memory in use over all GPUs (MiB), or None without nvidia-smi."""
    return sum(g["used_mib"] for g in gpus) if gpus else None


# -- the checks ----------------------------------------------------------------------------------


def run(engine: LlamaEngine, messages: list[Message], options: GenerationOptions = GREEDY) -> tuple[str, Done]:
    """A whole reply: its text (thinking included, in order) and its Done."""
    parts: list[str] = []
    done = None
    for ev in engine.stream(messages, options):
        if isinstance(ev, Text | Thinking):
            parts.append(ev.text)
        elif isinstance(ev, Done):
            done = ev
    assert done is not None, "the stream ended without Done"
    return "".join(parts), done


@contextmanager
def flash_attn_spy() -> Iterator[list[int]]:
    """The flash-attention type of every context the engine creates (as the CPU test spies on it)."""
    import llama_cpp

    seen: list[int] = []
    real: Callable[..., Any] = llama_cpp.llama_init_from_model

    def spy(model: object, params: Any) -> object:
        seen.append(int(params.flash_attn_type))
        return real(model, params)

    llama_cpp.llama_init_from_model = spy
    try:
        yield seen
    finally:
        llama_cpp.llama_init_from_model = real


def first_difference(a: str, b: str) -> int | None:
    """Index of the first differing character, None when equal."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def check_restore(path: Path) -> dict[str, Any]:
    """A follow-up greedy reply resumed from the checkpoint against the same prompt evaluated fresh.

    A fresh evaluation in small batches says whether the backend's numbers depend on batching at
    all: if it already differs from the one-batch evaluation, a restore mismatch may be arithmetic,
    not the state.
    """
    msgs: list[Message] = [{"role": "user", "content": "Say something."}]
    warm = LlamaEngine(path, n_ctx=N_CTX)
    first, _ = run(warm, msgs)
    msgs += [{"role": "assistant", "content": first}, {"role": "user", "content": "And again."}]
    reused, done = run(warm, msgs)
    warm.close()
    fresh_engine = LlamaEngine(path, n_ctx=N_CTX)
    fresh, fresh_done = run(fresh_engine, msgs)
    fresh_engine.close()
    small = LlamaEngine(path, n_ctx=N_CTX, n_batch=8)
    small_batches, _ = run(small, msgs)
    small.close()
    return {
        "ok": done.stats.reused_tokens > 0 and fresh_done.stats.reused_tokens == 0 and reused == fresh,
        "reused_tokens": done.stats.reused_tokens,
        "prompt_tokens": done.stats.prompt_tokens,
        "restored_reply": reused,
        "fresh_reply": fresh,
        "first_difference": first_difference(reused, fresh),
        "fresh_is_batch_invariant": small_batches == fresh,
    }


def check_cancel(engine: LlamaEngine) -> dict[str, Any]:
    """Cancel after a few events; the engine may finish at most the token it was computing.

    Each event counts the tokens generated since the previous one, so when the consumer sets the
    cancel after event k the engine has generated exactly the tokens those k events count.
    """
    cancel = threading.Event()
    options = GenerationOptions(temperature=0, max_tokens=256, ignore_eos=True)
    story: list[Message] = [{"role": "user", "content": "Write a long story about a cat."}]
    seen = at_cancel = after = 0
    done = None
    for ev in engine.stream(story, options, cancel):
        if isinstance(ev, Text | Thinking):
            if cancel.is_set():
                after += 1
                continue
            seen += 1
            at_cancel += ev.tokens
            if seen == CANCEL_AFTER:
                cancel.set()
        elif isinstance(ev, Done):
            done = ev
    assert done is not None
    generated = done.stats.generated_tokens
    return {
        "ok": done.stats.finish_reason == "cancelled" and at_cancel <= generated <= at_cancel + 1,
        "finish_reason": done.stats.finish_reason,
        "tokens_at_cancel": at_cancel,
        "generated_tokens": generated,
        "events_after_cancel": after,
    }


def check_model(path: Path, expect: str) -> dict[str, Any]:
    """Every check on one model; the figures and a verdict per check."""
    before = nvidia_smi()
    mark = LOG.count
    engine = LlamaEngine(path, n_ctx=N_CTX)
    with flash_attn_spy() as fa_types:
        load_s = engine.load()
    parsed = parse_load_log(logged_since(mark))
    _, first = run(engine, [{"role": "user", "content": "Hello."}])
    after = nvidia_smi()
    memory = device_memory()
    offloaded, layers = parsed["offloaded_layers"], parsed["offloadable_layers"]
    on_gpu = expect != "cpu"
    fa_wanted = -1 if on_gpu else 0  # auto: llama.cpp's choice on a GPU; off on the CPU
    checks: dict[str, dict[str, Any]] = {
        "backend": {"ok": engine.backend == expect, "backend": engine.backend, "expected": expect},
        "offload": {
            "ok": (offloaded == layers and bool(layers)) if on_gpu else not offloaded,
            "offloaded_layers": offloaded,
            "offloadable_layers": layers,
        },
        "flash": {
            "ok": fa_types == [fa_wanted],
            "flash_attn_type": fa_types,
            "expected": fa_wanted,
            "llama_cpp_chose": parsed["fused_ops"].get("Flash Attention", "off" if not on_gpu else "unknown"),
        },
    }
    checks["cancel"] = check_cancel(engine)
    engine.close()
    checks["restore"] = check_restore(path)
    before_mib, after_mib = used_mib(before), used_mib(after)
    return {
        "model": path.name,
        "path": str(path.resolve()),
        "load_s": load_s,
        "first_reply_ttft_s": first.stats.ttft_s,
        "vram_used_before_mib": before_mib,
        "vram_used_after_mib": after_mib,
        "vram_model_mib": after_mib - before_mib if before_mib is not None and after_mib is not None else None,
        "device_memory": memory,
        "buffers_mib": parsed["buffers_mib"],
        "fused_ops": parsed["fused_ops"],
        "checks": checks,
    }


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """One PASS/FAIL line per check of a model, with the figures that decide it."""
    c, name = result["checks"], result["model"]
    at = c["restore"]["first_difference"]
    detail = {
        "backend": f"backend {c['backend']['backend']} (expected {c['backend']['expected']})",
        "offload": f"offloaded {c['offload']['offloaded_layers']}/{c['offload']['offloadable_layers']} layers",
        "flash": f"flash_attn_type {c['flash']['flash_attn_type']} (expected [{c['flash']['expected']}]),"
        f" llama.cpp: {c['flash']['llama_cpp_chose']}",
        "cancel": f"{c['cancel']['generated_tokens']} tokens generated, {c['cancel']['tokens_at_cancel']}"
        f" when cancelled ({c['cancel']['finish_reason']})",
        "restore": f"reused {c['restore']['reused_tokens']}/{c['restore']['prompt_tokens']} tokens,"
        f" replies {'equal' if at is None else f'differ from character {at}'}"
        f"; fresh evaluation batch-invariant: {c['restore']['fresh_is_batch_invariant']}",
    }
    return [f"{'PASS' if c[k]['ok'] else 'FAIL'} {k:<8} {name}: {detail[k]}" for k in detail]


# -- the bench's figures -------------------------------------------------------------------------


def bench_rows(bench: dict[str, Any], checked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: the bench's medians and percentiles, with the memory the check measured."""
    by_path = {m["path"]: m for m in checked}
    rows = []
    for run_ in bench.get("runs", []):
        s = run_.get("summary") or {}

        def median(key: str, s: dict[str, Any] = s) -> float | None:
            return (s.get(key) or {}).get("median")

        decode = s.get("decode_ms") or {}
        mine = by_path.get(str(Path(run_["path"]).resolve()), {})
        rows.append(
            {
                "model": run_["model"],
                "backend": run_.get("backend"),
                "threads": run_.get("threads"),
                "load_s": median("load_s"),
                "ttft_s": median("ttft_s"),
                "prefill_tps": median("prefill_tps"),
                "decode_ms_p50": decode.get("p50"),
                "decode_ms_p90": decode.get("p90"),
                "raw_decode_ms_p50": (s.get("raw_decode_ms") or {}).get("p50"),
                "ratio": s.get("ratio"),
                "followup_ttft_s": median("followup_ttft_s"),
                "vram_model_mib": mine.get("vram_model_mib"),
                "gpu_buffers_mib": {
                    kind: sum(v for dev, v in devs.items() if not dev.startswith("CPU"))
                    for kind, devs in (mine.get("buffers_mib") or {}).items()
                },
                "error": run_.get("error"),
            }
        )
    return rows


def fmt(value: Any, spec: str) -> str:
    """A figure, or '-' when it was not measured."""
    return "-" if value is None else format(value, spec)


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The per-model table the report quotes."""
    head = ("model", "backend", "load s", "TTFT ms", "prefill t/s", "ms/tok p50", "p90", "raw p50", "ratio", "VRAM MiB")
    print(" | ".join(head))
    for r in rows:
        ttft_ms = r["ttft_s"] * 1000 if r["ttft_s"] is not None else None
        figures = [(r["load_s"], ".2f"), (ttft_ms, ".1f"), (r["prefill_tps"], ".0f"), (r["decode_ms_p50"], ".2f")]
        figures += [(r["decode_ms_p90"], ".2f"), (r["raw_decode_ms_p50"], ".2f"), (r["ratio"], ".3f")]
        figures += [(r["vram_model_mib"], "d")]
        print(" | ".join([r["model"], str(r["backend"]), *(fmt(v, spec) for v, spec in figures)]))
        if r["error"]:
            print(f"  {r['model']} failed: {r['error']}")


# -- the command ---------------------------------------------------------------------------------


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when the file is not there."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EdgeAssistError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise EdgeAssistError(f"{path} does not hold a JSON object")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` whole or not at all (a run cut off at its limit leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    part.replace(path)


def main(argv: list[str] | None = None) -> int:
    """Check the models given, or (--report) merge a bench file into the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", type=Path, help="GGUF files to check")
    p.add_argument("--expect-backend", default="cuda", help="the backend the engine must report (cuda; cpu)")
    p.add_argument("--json", type=Path, required=True, help="results file (merged into when it exists)")
    p.add_argument("--report", type=Path, metavar="BENCH_JSON", help="add this bench file's figures per model")
    args = p.parse_args(argv)
    if not args.models and not args.report:
        p.error("give models to check, or --report BENCH_JSON")
    try:
        results = read_json(args.json)
        if args.models:
            results = check_all(args.models, args.expect_backend, results, args.json)
        if args.report:
            rows = bench_rows(read_json(args.report), results.get("models", []))
            if not rows:
                raise EdgeAssistError(f"{args.report} has no runs")
            new = {r["model"] for r in rows}  # a later bench file (the 4B's) adds its models to the table
            results["bench"] = [r for r in results.get("bench", []) if r["model"] not in new] + rows
            write_json(args.json, results)
            print_rows(results["bench"])
    except EdgeAssistError as e:
        print(f"cuda_engine_check: {e}", file=sys.stderr)
        return 2
    checks = [c["ok"] for m in results.get("models", []) for c in m["checks"].values()]
    return 0 if all(checks) else 1


def check_all(models: list[Path], expect: str, results: dict[str, Any], out: Path) -> dict[str, Any]:
    """Check each model in turn, writing the results after each (so a cut-off run keeps them)."""
    from edgeassist.engine.build import llama_build

    build = llama_build()
    results["llama"] = None if build is None else vars(build)
    results["gpus"] = nvidia_smi()
    results["expect_backend"] = expect
    done = [m for m in results.get("models", []) if m["path"] not in {str(p.resolve()) for p in models}]
    print(f"llama.cpp {results['llama'] and results['llama']['llama_version']}: devices {build and build.devices}")
    for path in models:
        t0 = time.perf_counter()
        result = check_model(path, expect)
        result["check_s"] = time.perf_counter() - t0
        done.append(result)
        results["models"] = done
        write_json(out, results)
        for line in verdict_lines(result):
            print(line, flush=True)
        vram = result["vram_model_mib"]
        print(f"     memory   {path.name}: load {result['load_s']:.2f} s, GPU memory +{fmt(vram, 'd')} MiB"
              f" (nvidia-smi), buffers {json.dumps(result['buffers_mib'])}", flush=True)  # fmt: skip
    return results


if __name__ == "__main__":
    sys.exit(main())
