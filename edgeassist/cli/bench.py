"""`edgeassist bench`: how fast the model runs here, against the target, against raw llama.cpp, and what to use.

With `--endpoint URL` (or `model.endpoint`) it times the server's model instead, through the same engine
as chat; `--compare` with no files runs the local model and the server's in one go, side by side.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edgeassist.cli import setting_flag, settings_group
from edgeassist.config import Settings
from edgeassist.errors import UsageError

if TYPE_CHECKING:
    from edgeassist.bench.measure import BenchTarget, Progress
    from edgeassist.bench.results import BenchResult


_BenchSetting = setting_flag("bench")
"""Store the flag as a `[bench]` settings override."""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, like 1,2,4; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"thread counts must be 1 or more; got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the `bench` subcommand.

    It takes the common flags except `--model` and `--threads`, which here take comma lists
    (a sweep, as llama-bench does) and so are its own.
    """
    p = sub.add_parser(
        "bench",
        help="measure load time, time to first token, ms/token against a target and raw llama.cpp",
        description="Benchmark the model through the same engine as chat and voice, with a raw llama.cpp "
        "decode loop as the baseline; print a report with a latency histogram, a verdict against the "
        "per-token target and the catalog model to use here. With no model given it runs the configured "
        "one (else the offline starter). With --endpoint it times the server's model (time to first token, "
        "ms/token and network jitter; no raw baseline); add --compare to run the local model beside it. "
        "With --image it also times a picture in a first message (a model that cannot see says so and runs "
        "the text figures). Ctrl+C stops and prints what was measured.",
    )
    settings_group(p, model_and_threads=False)
    w = p.add_argument_group("what to run")
    w.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        type=_name_list,
        metavar="NAMES",
        help="models, comma-separated or repeated: catalog names (qwen3.5-2b:q8_0), files, `starter`",
    )
    w.add_argument(
        "--synthetic",
        type=_name_list,
        metavar="SHAPES",
        help="random-weight Qwen 3.5 of these shapes (0.8b,2b; tiny for a smoke test), built once into models/",
    )
    w.add_argument("--quant", default="Q4_K_M", help="quantization of --synthetic models (Q4_K_M, Q8_0)")
    w.add_argument(
        "-t",
        "--threads",
        dest="thread_list",
        type=_int_list,
        metavar="LIST",
        help="thread counts to sweep, e.g. 1,2,4 (default: model.n_threads, else the physical cores)",
    )
    w.add_argument(
        "-r", "--repetitions", type=int, action=_BenchSetting, default=argparse.SUPPRESS, help="measured repetitions"
    )
    w.add_argument("--warmup", type=int, action=_BenchSetting, default=argparse.SUPPRESS, help="warm-up repetitions")
    w.add_argument(
        "-p", "--prompt-tokens", type=int, action=_BenchSetting, default=argparse.SUPPRESS, help="prompt length"
    )
    w.add_argument(
        "-n", "--gen-tokens", type=int, action=_BenchSetting, default=argparse.SUPPRESS, help="tokens to generate"
    )
    w.add_argument(
        "--target-ms", type=float, action=_BenchSetting, default=argparse.SUPPRESS, help="per-token target (ms)"
    )
    w.add_argument("--no-raw", action="store_true", help="skip the raw llama.cpp baseline")
    w.add_argument("--voice", action="store_true", help="also time the speech stages (needs the voice pipeline)")
    w.add_argument(
        "--image",
        nargs="?",
        const="generated",
        metavar="FILE",
        help="also time a first message with a picture (FILE: JPEG, PNG or WebP; none: a generated 1024x768 test "
        "picture) and a follow-up that should not read it again: encoder time, image tokens, time to first token; "
        "with --synthetic, its vision projector is built too",
    )
    w.add_argument(
        "--contention",
        nargs="?",
        const=1,
        type=int,
        metavar="N",
        help="with N competing busy processes (default 1), then quiet: each fixed thread count (--threads, "
        "default 1 to the physical cores) beside the adaptive engine, tokens/s, TTFT and the ratios",
    )
    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, metavar="FILE", help="write every sample as JSON (docs/bench-schema.json)")
    o.add_argument("--markdown", action="store_true", help="print markdown, for pasting into an issue")
    o.add_argument("--no-histogram", action="store_true", help="leave out the latency histograms")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    o.add_argument(
        "--compare",
        nargs="*",
        type=Path,
        metavar="A.json B.json",
        help="show two saved results side by side with ratios (runs nothing); with no files and --endpoint, "
        "run the local model and the server's and show them side by side",
    )
    p.set_defaults(handler=run)


class ProgressPrinter:
    """Progress on stderr: one line rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self, stream: TextIO | None = None) -> None:
        """Write to `stream` (default: stderr at the time of the call)."""
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self._width = 0

    def __call__(self, p: Progress) -> None:
        """Show one progress step."""
        from edgeassist.bench.report import threads_text

        elapsed = int(time.monotonic() - self.t0)
        where = "remote" if p.threads is None else threads_text(p.threads)
        line = (
            f"[{p.run}/{p.runs}] {p.model} · {where} · {p.step}"
            f" · {p.fraction * 100:.0f}% · {elapsed // 60}:{elapsed % 60:02d}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (a build step, a notice)."""
        self.end()
        self.stream.write(f"edgeassist: {text}\n")
        self.stream.flush()

    def end(self) -> None:
        """Finish the in-place line."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def resolve_targets(args: argparse.Namespace, settings: Settings, say: Any) -> list[BenchTarget]:
    """The models to bench, all found (or built) before anything is measured."""
    from edgeassist import synthetic
    from edgeassist.bench.measure import BenchTarget
    from edgeassist.hub import resolve

    models_dir = settings.models_dir()
    targets: list[BenchTarget] = []
    for shape in args.synthetic or []:
        path = synthetic.default_path(shape, args.quant, models_dir)
        if not path.is_file():
            say(f"building the synthetic Qwen 3.5 {shape} ({args.quant}) once into {path}")
        built = synthetic.build(shape, args.quant, out=path, force=False, progress=say)
        projector = synthetic.projector_path(built.path)
        if args.image is not None and not projector.is_file():
            say(f"building the synthetic Qwen 3.5 {built.shape} vision projector once into {projector}")
            synthetic.build_projector(built.shape, projector, progress=say)
        quant = built.quant.lower()
        targets.append(BenchTarget(f"synthetic-qwen3.5-{built.shape}:{quant}", built.path, quant, built.shape))
    for name in [n for group in args.models or [] for n in group]:
        r = resolve(name, models_dir, fallback=False)
        targets.append(BenchTarget(r.name, r.path, r.quant, starter=r.is_starter))
    if not targets:
        r = resolve(settings.model.name, models_dir, fallback=settings.model.starter_fallback)
        if r.note:
            say(r.note)
        targets.append(BenchTarget(r.name, r.path, r.quant, starter=r.is_starter))
    return targets


LOCAL_ONLY = (
    ("models", "-m/--model"),
    ("synthetic", "--synthetic"),
    ("thread_list", "--threads"),
    ("voice", "--voice"),
    ("contention", "--contention"),
)
"""Flags (dest, as typed) that only a local model takes: with an endpoint they need `--compare`."""


def check_remote_flags(args: argparse.Namespace, endpoint: str | None) -> bool:
    """Whether this bench runs a remote model; a usage error for flags that do not fit how it runs.

    `--compare` with no files is local and remote side by side, which needs an endpoint; with an
    endpoint and no `--compare` only the server's model runs, so a local model's flags (a model, a
    thread sweep, `--synthetic`, `--voice`) would be silently ignored: they are refused instead.
    """
    side_by_side = args.compare == []
    if side_by_side and not endpoint:
        raise UsageError(
            "--compare with no files runs a local model beside a remote one: add --endpoint URL, "
            "or give two saved results (--compare A.json B.json)"
        )
    if endpoint and not side_by_side:
        given = next((flag for dest, flag in LOCAL_ONLY if getattr(args, dest, None)), None)
        if given is not None:
            raise UsageError(
                f"{given} is for a local model, and with an endpoint ({endpoint}, from --endpoint or "
                "model.endpoint) the bench times the server's: add --compare to run the local model beside it"
            )
    return bool(endpoint)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the bench (or the comparison) and print the report."""
    from edgeassist.bench.report import render_compare, render_markdown, render_text
    from edgeassist.bench.store import load_result

    out = sys.stdout
    if args.compare:
        if len(args.compare) != 2:
            raise UsageError(
                f"--compare takes two saved results (A.json B.json), not {len(args.compare)}; "
                "or none, with --endpoint, to run a local and a remote model side by side"
            )
        a_path, b_path = args.compare
        a, b = load_result(a_path), load_result(b_path)
        out.write(render_compare(a, b, (str(a_path), str(b_path))))
        return 0
    remote = check_remote_flags(args, settings.model.endpoint)
    local = not remote or args.compare == []

    if args.contention is not None:
        return run_contention_bench(args, settings)

    from edgeassist.bench.measure import BenchPlan, run_bench
    from edgeassist.bench.picture import bench_picture
    from edgeassist.bench.report import threads_text
    from edgeassist.bench.voice import find_voice_hook
    from edgeassist.engine.build import physical_cores

    progress = ProgressPrinter()
    say = (lambda _text: None) if args.quiet else progress.note
    picture = bench_picture(args.image) if args.image is not None else None  # (a bad file fails before anything)
    voice = find_voice_hook() if args.voice else None
    bs = settings.bench
    if bs.prompt_tokens + bs.gen_tokens + 64 > settings.model.n_ctx:
        raise UsageError(
            f"--prompt-tokens {bs.prompt_tokens} and --gen-tokens {bs.gen_tokens} do not fit the "
            f"{settings.model.n_ctx}-token context with a follow-up turn: lower them or raise --n-ctx"
        )
    if picture is not None and bs.prompt_tokens + settings.model.image_tokens + 64 > settings.model.n_ctx:
        raise UsageError(
            f"--prompt-tokens {bs.prompt_tokens} and a picture of up to {settings.model.image_tokens} tokens "
            f"(model.image_tokens) do not fit the {settings.model.n_ctx}-token context with a follow-up turn: "
            "lower them or raise --n-ctx"
        )
    targets = resolve_targets(args, settings, say) if local else []
    plan = BenchPlan(
        targets=targets,
        threads=args.thread_list or [settings.model.n_threads or physical_cores()],
        repetitions=bs.repetitions,
        prompt_tokens=bs.prompt_tokens,
        gen_tokens=bs.gen_tokens,
        target_ms=bs.target_ms,
        warmup=bs.warmup,
        raw_baseline=local and not args.no_raw,
        command=_command_line(),
        voice=voice,
        remote=remote,
        image=picture,
        image_source=args.image,
    )
    result = run_bench(settings, plan, progress=None if args.quiet else progress)
    progress.end()
    if args.markdown:
        out.write(render_markdown(result))
    else:
        out.write(render_text(result, show_histogram=not args.no_histogram))
    out.flush()
    if _saved_and_interrupted(result, args):
        return 130
    failed = [r for r in result.runs if r.error]
    for r in failed:
        where = f"on {r.endpoint}" if r.endpoint else f"at {threads_text(r.threads)}"
        print(f"edgeassist: {r.model} {where} failed: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def run_contention_bench(args: argparse.Namespace, settings: Settings) -> int:
    """`bench --contention`: fixed thread counts and the adaptive engine, under a competing load and quiet."""
    from edgeassist.bench.contention import ContentionPlan, run_contention
    from edgeassist.bench.report import render_contention
    from edgeassist.engine.build import physical_cores

    if args.contention < 1:
        raise UsageError(f"--contention takes the number of competing busy processes, 1 or more; got {args.contention}")
    if args.voice or args.image is not None or args.compare is not None:
        raise UsageError("--contention runs on its own: leave out --voice, --image and --compare")
    progress = ProgressPrinter()
    say = (lambda _text: None) if args.quiet else progress.note
    targets = resolve_targets(args, settings, say)
    if len(targets) != 1:
        raise UsageError(f"--contention measures one model; got {len(targets)}")
    bs = settings.bench
    most = settings.model.n_threads or physical_cores()
    plan = ContentionPlan(
        target=targets[0],
        threads=sorted(set(args.thread_list or range(1, most + 1))),
        busy=args.contention,
        repetitions=bs.repetitions,
        warmup=bs.warmup,
        prompt_tokens=bs.prompt_tokens,
        gen_tokens=bs.gen_tokens,
        target_ms=bs.target_ms,
        command=_command_line(),
    )
    result = run_contention(settings, plan, progress=None if args.quiet else progress)
    progress.end()
    sys.stdout.write(render_contention(result, markdown=args.markdown))
    sys.stdout.flush()
    return 130 if _saved_and_interrupted(result, args) else 0


def _saved_and_interrupted(result: BenchResult, args: argparse.Namespace) -> bool:
    """Write the result to `--json` if asked; whether the bench was interrupted (said on stderr)."""
    from edgeassist.bench.store import save_result

    if args.json:
        save_result(result, args.json)
        print(f"edgeassist: wrote {args.json}", file=sys.stderr)
    if result.interrupted:
        print("edgeassist: interrupted; the report shows what was measured", file=sys.stderr)
    return result.interrupted


def _command_line() -> str:
    """The command as typed, when this process is the `edgeassist` command (not a test calling `main`)."""
    if Path(sys.argv[0]).name in ("edgeassist", "__main__.py") and "bench" in sys.argv[1:]:
        return shlex.join(["edgeassist", *sys.argv[1:]])
    return "edgeassist bench"
