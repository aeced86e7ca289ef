"""`edgeassist voice`: push-to-talk in the terminal, the reply spoken sentence by sentence.

Space (or Enter) starts recording and stops it again; where the terminal reports key releases
(the kitty keyboard protocol) or repeats a held key, holding the key talks and letting go sends.
Pressing it while the reply plays interrupts (barge-in) and records. Esc or Ctrl+C quits.
`--input-wav` / `--output-wav` run one turn from and to files, for scripts.

`--hands-free` needs no key: voice activity starts and ends each turn (`edgeassist.voice.handsfree`),
and the state (listening, hearing you, thinking, speaking) is shown as it changes. With
`--input-wav` the file is a whole conversation, answered turn by turn. Ctrl+C quits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from edgeassist.cli import Terminated, setting_flag, tool_flags
from edgeassist.config import Settings
from edgeassist.errors import UsageError

if TYPE_CHECKING:
    from edgeassist.voice import VoiceEvent, VoicePipeline, VoiceTurnTimings
    from edgeassist.voice.handsfree import StateChanged

HOLD_S = 0.35
"""A key held longer than this before its release is hold-to-talk; a shorter press is a tap (toggle)."""
REPEAT_GAP_S = 0.7
"""A press this soon after the last one is the terminal repeating a held key, not a new press."""
RELEASE_GAP_S = 0.15
"""Without release events, a held key counts as released when its repeats stop for this long."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    """Add the `voice` subcommand."""
    p = sub.add_parser(
        "voice",
        parents=[common],
        help="talk to the assistant: push-to-talk, spoken replies",
        description="Push-to-talk voice chat. Space or Enter starts and stops recording (or hold it, where the "
        "terminal reports key releases); pressing it while the reply plays interrupts. Esc or Ctrl+C quits. "
        "Speech to text is faster-whisper, speech is piper: pip install 'edgeassist[speech]'.",
    )
    p.add_argument("--list-devices", action="store_true", help="list microphones and speakers, then exit")
    p.add_argument("--input-wav", type=Path, metavar="FILE", help="take the question from a wav file (one turn)")
    p.add_argument("--output-wav", type=Path, metavar="FILE", help="write the spoken reply to a wav file")
    for flag, section, text in (
        ("--input-device", "audio", "microphone: index or part of the name (see --list-devices)"),
        ("--output-device", "audio", "speaker: index or part of the name"),
        ("--whisper-model", "speech", "faster-whisper model (default: speech.whisper_model)"),
        ("--voice", "speech", "piper voice name or .onnx path (default: speech.voice)"),
    ):
        p.add_argument(flag, action=setting_flag(section), default=argparse.SUPPRESS, help=text)
    p.add_argument("--no-speak", action="store_true", help="answer in text only")
    p.add_argument(
        "--once",
        action="store_true",
        help="listen hands-free for one question (recording stops after a silence), answer, exit",
    )
    p.add_argument(
        "--hands-free",
        action="store_true",
        help="no key: your voice starts and ends each turn (with --input-wav: a whole conversation from the file)",
    )
    p.add_argument(
        "--end-of-turn",
        action=setting_flag("speech", "end_of_turn_s"),
        default=argparse.SUPPRESS,
        metavar="S",
        help="with --hands-free: silence that ends your turn (default: speech.end_of_turn_s)",
    )
    p.add_argument(
        "--barge-in",
        action=setting_flag("speech", "barge_in"),
        default=argparse.SUPPRESS,
        metavar="off|headset",
        help="with --hands-free: headset lets your voice interrupt a reply; off (default): deaf while it speaks",
    )
    p.add_argument(
        "--end-silence",
        action=setting_flag("speech", "end_silence_s"),
        default=argparse.SUPPRESS,
        metavar="S",
        help="with --once: silence that ends the question",
    )
    p.add_argument(
        "--think", action=argparse.BooleanOptionalAction, default=None, help="let Qwen 3.5 think first (never spoken)"
    )
    p.add_argument(
        "--system", action=setting_flag("generation", "system_prompt"), default=argparse.SUPPRESS, help="system prompt"
    )
    p.add_argument("--chat", metavar="NAME", help="continue (or start) the saved chat NAME")
    tool_flags(p, " (voice cannot ask: a tool whose policy is `ask` is refused)")
    p.add_argument(
        "--max-tokens",
        action=setting_flag("generation"),
        default=argparse.SUPPRESS,
        metavar="N",
        help="most tokens per reply",
    )
    p.add_argument("--timings", action="store_true", help="print where each turn's time went")
    p.set_defaults(handler=run)


# -- output ----------------------------------------------------------------------------------------


def print_devices(out: TextIO = sys.stdout) -> int:
    """Print the sound devices PortAudio sees; the defaults are marked."""
    from edgeassist.speech.audio import list_devices

    devices = list_devices()
    if not devices:
        print("no sound devices found (PortAudio sees none); --input-wav/--output-wav still work", file=out)
        return 0
    rows = [("", "INDEX", "IN", "OUT", "RATE", "API", "NAME")]
    for d in devices:
        mark = ("<" if d.default_input else " ") + (">" if d.default_output else " ")
        rows.append((mark, str(d.index), str(d.inputs), str(d.outputs), f"{d.default_rate:.0f}", d.hostapi, d.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
    print("\n< default microphone, > default speaker; choose with audio.input_device / audio.output_device", file=out)
    return 0


def format_timings(t: VoiceTurnTimings) -> str:
    """One line: where the turn's time went."""

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}s"

    parts = [
        f"stt {s(t.stt_final_s)} after release (rtf {t.stt_rtf or 0:.2f}, {t.stt_passes} passes while held)",
        f"first token {s(t.llm_first_token_s)}",
        f"first sentence {s(t.llm_first_sentence_s)}",
        f"tts first {s(t.tts_first_s)} (rtf {t.tts_rtf or 0:.2f})",
        f"first audio {s(t.first_audio_s)} after release, {s(t.speech_end_to_first_audio_s)} after speech",
    ]
    return "timings: " + " · ".join(parts)


class _Printer:
    """Prints a turn's events; the level meter and partial transcript share one line while recording."""

    def __init__(self, out: TextIO, err: TextIO, timings: bool) -> None:
        self.out, self.err, self.timings = out, err, timings
        self.lock = threading.Lock()
        self.level = 0.0
        self.partial = ""
        self._meter_shown = False
        self._in_reply = False
        self._held_state: StateChanged | None = None

    def meter(self) -> None:
        with self.lock:
            bars = int(self.level * 20)
            text = self.partial[-50:]
            self.out.write(f"\r\x1b[2K● rec {'█' * bars}{'·' * (20 - bars)} {text}")
            self.out.flush()
            self._meter_shown = True

    def clear_meter(self) -> None:
        with self.lock:
            if self._meter_shown:
                self.out.write("\r\x1b[2K")
                self.out.flush()
                self._meter_shown = False

    def event(self, event: VoiceEvent) -> None:
        from edgeassist.engine import Notice, Text
        from edgeassist.voice import Heard, TurnDone

        with self.lock:
            if isinstance(event, Heard):
                self.out.write(f"you: {event.text}\n" if event.text else "")
            elif isinstance(event, Text):
                if not self._in_reply:
                    self.out.write("assistant: ")
                    self._in_reply = True
                self.out.write(event.text)
            elif isinstance(event, Notice):
                print(f"edgeassist: {event.text}", file=self.err)
            elif isinstance(event, TurnDone):
                if self._in_reply:
                    self.out.write(" [interrupted]\n" if event.status == "cancelled" else "\n")
                self._in_reply = False
                if self.timings and event.status != "empty":
                    print(format_timings(event.timings), file=self.err)
            self.out.flush()

    def state(self, change: StateChanged) -> None:
        """Show where a hands-free conversation is: a line rewritten in place on a terminal, else one line
        per change (not while the reply's own line is being written: that it speaks is plain there)."""
        with self.lock:
            if self._in_reply:
                if change.reason == "barge-in":
                    self._held_state = change  # shown when the interrupted reply's line ends
                return
            self._held_state = None
            if self.out.isatty():
                self.out.write(f"\r\x1b[2K● {change.state.label}")
                self.out.flush()
                self._meter_shown = True
            else:
                print(f"[{change.state.label}]", file=self.err, flush=True)

    def hands_free_event(self, event: VoiceEvent) -> None:
        """A hands-free turn's event: the state line gives way to it."""
        from edgeassist.engine import Notice, Text
        from edgeassist.voice import Heard, TurnDone

        if isinstance(event, Heard | Notice | TurnDone) or (isinstance(event, Text) and not self._in_reply):
            self.clear_meter()  # before a line is printed
        self.event(event)
        held = self._held_state
        if isinstance(event, TurnDone) and held is not None:
            self.state(held)  # a barge-in began while the reply's line was being written


# -- keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One key event from the terminal."""

    name: Literal["talk", "esc", "ctrl-c", "other"]
    """talk (Space or Enter), esc, ctrl-c, or any other key."""
    kind: Literal["press", "repeat", "release"] = "press"
    """Press, repeat, or release (the last two only with the kitty keyboard protocol)."""


_KITTY = re.compile(rb"\x1b\[(\d+)(?::\d*)*(?:;(\d*)(?::(\d))?)?(?:;[\d:]*)?u")
_CSI = re.compile(rb"\x1b\[[0-9;:?<>=]*[@-~]|\x1bO.")
_KINDS: dict[bytes, Literal["press", "repeat", "release"]] = {b"1": "press", b"2": "repeat", b"3": "release"}


def parse_keys(data: bytes) -> list[Key]:
    """Key events in bytes read from a terminal (plain bytes, escape sequences, kitty `CSI ... u`)."""
    keys: list[Key] = []
    i = 0
    while i < len(data):
        m = _KITTY.match(data, i)
        if m:
            code, mods = int(m.group(1)), int(m.group(2) or b"1") - 1
            kind = _KINDS.get(m.group(3) or b"1", "press")
            if code in (32, 13):
                keys.append(Key("talk", kind))
            elif code == 27:
                keys.append(Key("esc", kind))
            elif code == 99 and mods & 4:
                keys.append(Key("ctrl-c", kind))
            else:
                keys.append(Key("other", kind))
            i = m.end()
            continue
        m = _CSI.match(data, i)
        if m:
            keys.append(Key("other"))
            i = m.end()
            continue
        b = data[i : i + 1]
        if b in (b" ", b"\r", b"\n"):
            keys.append(Key("talk"))
        elif b == b"\x1b":
            keys.append(Key("esc"))
        elif b == b"\x03":
            keys.append(Key("ctrl-c"))
        else:
            keys.append(Key("other"))
        i += 1
    return keys


@contextmanager
def _terminal(fd: int, out: TextIO) -> Iterator[bool]:
    """Keys one at a time, no echo; the kitty keyboard protocol (key releases) where the terminal has it.

    Yields whether release events will come.
    """
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    kitty = False
    try:
        # Ask for the protocol's flags, then for the device attributes every terminal answers:
        # a flags reply arriving before the attributes means the protocol is there.
        out.write("\x1b[?u\x1b[c")
        out.flush()
        reply = b""
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline and not re.search(rb"\x1b\[\?[\d;]*c", reply):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            reply += os.read(fd, 256)
        kitty = re.search(rb"\x1b\[\?\d+u", reply) is not None
        if kitty:
            out.write("\x1b[>11u")  # disambiguate + report releases + all keys as escape codes
            out.flush()
        yield kitty
    finally:
        with contextlib.suppress(OSError, termios.error):  # the terminal may be gone (SIGHUP)
            if kitty:
                out.write("\x1b[<u")
                out.flush()
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _Loop:
    """The interactive push-to-talk loop: keys in the main thread, each reply in a worker thread."""

    def __init__(self, pipeline: VoicePipeline, printer: _Printer, fd: int, releases: bool) -> None:
        self.pipeline = pipeline
        self.printer = printer
        self.fd = fd
        self.releases = releases
        self.worker: threading.Thread | None = None
        self.errors: list[BaseException] = []
        self.pressed_at = 0.0
        self.last_talk = -10.0
        self.hold: bool | None = None  # None: not yet known whether this recording is held or toggled

    def _respond(self) -> None:
        try:
            for event in self.pipeline.respond():
                self.printer.event(event)
        except BaseException as e:  # noqa: BLE001 - shown by the main thread
            self.errors.append(e)
            self.pipeline.interrupt()

    def _start(self, now: float) -> None:
        self.printer.clear_meter()
        self.pipeline.start_recording()  # barge-in when a reply is playing
        self.pressed_at = now
        self.hold = None
        self.printer.partial = ""

    def _stop(self) -> None:
        self.pipeline.stop_recording()
        self.printer.clear_meter()
        if self.worker is not None:
            self.worker.join()
        self.worker = threading.Thread(target=self._respond, name="voice-respond", daemon=True)
        self.worker.start()

    def _talk(self, key: Key, now: float) -> None:
        recording = self.pipeline.state == "recording"
        if key.kind == "repeat":
            return
        if key.kind == "release":
            if recording and now - self.pressed_at >= HOLD_S:
                self._stop()
            return
        if not self.releases and now - self.last_talk < REPEAT_GAP_S:
            self.last_talk = now  # the terminal repeating a held key
            if recording and self.hold is None:
                self.hold = True
            return
        self.last_talk = now
        if recording:
            self._stop()
        else:
            self._start(now)

    def run(self) -> int:
        print("press Space to talk (again to send, or hold it), Esc to quit", file=self.printer.err)
        while True:
            if self.errors:
                raise self.errors.pop()
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            now = time.perf_counter()
            if ready:
                for key in parse_keys(os.read(self.fd, 1024)):
                    if key.name in ("esc", "ctrl-c") and key.kind == "press":
                        self.pipeline.interrupt()
                        self.printer.clear_meter()
                        return 0
                    if key.name == "talk":
                        self._talk(key, now)
            recording = self.pipeline.state == "recording"
            if recording and self.hold and not self.releases and now - self.last_talk > RELEASE_GAP_S:
                self._stop()  # the held key's repeats stopped: it was let go
            elif recording:
                self.printer.meter()


# -- hands-free ------------------------------------------------------------------------------------


def _hands_free(pipeline: VoicePipeline, printer: _Printer) -> int:
    """Listen and answer until the input ends (a file) or Ctrl+C."""
    from edgeassist.voice.handsfree import HandsFree, StateChanged

    session = HandsFree(pipeline)
    session.start()
    print("hands-free: just speak; Ctrl+C quits", file=printer.err)
    try:
        for event in session.events():
            if isinstance(event, StateChanged):
                printer.state(event)
            else:
                printer.hands_free_event(event)
    except KeyboardInterrupt as e:  # Ctrl+C quits cleanly; kill and a closed terminal too
        session.stop()  # the reply stops, and is saved as stopped
        with contextlib.suppress(OSError):
            printer.clear_meter()
        if isinstance(e, Terminated):
            raise  # exit code 143 or 129
        return 0
    finally:
        session.stop()
    printer.clear_meter()
    return 0


# -- the command -----------------------------------------------------------------------------------


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the voice loop (or one turn from a wav file, or list the devices)."""
    out, err = sys.stdout, sys.stderr
    if args.list_devices:
        return print_devices(out)
    if args.hands_free and args.once:
        raise UsageError("--hands-free and --once: choose one (--hands-free listens for every question)")
    interactive = args.input_wav is None and not args.once and not args.hands_free
    if interactive and not sys.stdin.isatty():
        raise UsageError(
            "push-to-talk needs a terminal: run it in one, or use --input-wav FILE, or --once to listen hands-free"
        )
    from edgeassist.speech import require_speech

    speak = False if args.no_speak else settings.speech.speak_replies
    require_speech("faster_whisper", *(("piper",) if speak else ()))  # before anything slow is loaded

    from edgeassist.chat import Conversation
    from edgeassist.cli.ask import toolbox_for
    from edgeassist.engine.factory import generation_options, open_engine
    from edgeassist.voice import VoiceConfig, build_pipeline

    end_silence = (settings.speech.end_silence_s or 1.0) if args.once else None
    config = VoiceConfig.from_settings(settings, speak=speak, end_silence_s=end_silence)
    if args.hands_free:
        from edgeassist.voice.handsfree import hands_free_config

        config = hands_free_config(config)
    printer = _Printer(out, err, args.timings)

    def on_level(level: float) -> None:
        printer.level = level

    def on_transcript(text: str, final: bool) -> None:
        if not final:
            printer.partial = text

    opened = open_engine(settings, explicit=hasattr(args, "model"))
    # --max-tokens, --system and --end-silence are setting flags: validated and read from `settings`.
    options = generation_options(settings, think=args.think)
    system = settings.generation.system_prompt
    tools = toolbox_for(settings, args, lambda text: print(f"edgeassist: {text}", file=err))
    if args.chat is not None:  # an empty name is refused by Conversation.open, never silently unsaved
        from edgeassist.store import Store

        store = Store(settings.store_path())
        convo = Conversation.open(opened.engine, store, args.chat, system_prompt=system, tools=tools)
        convo.options = options
    else:
        convo = Conversation(opened.engine, system_prompt=system, options=options, tools=tools)
    pipeline = build_pipeline(
        settings,
        convo,
        input_wav=args.input_wav,
        output_wav=args.output_wav,
        on_level=on_level,
        on_transcript=on_transcript,
        config=config,
    )
    for note in [opened.resolved.note, *pipeline.notes]:
        if note:
            print(f"edgeassist: {note}", file=err)
    try:
        if interactive or args.once or args.timings or args.hands_free:
            print("loading models...", file=err)
            pipeline.warm_up()  # so that the first turn's timings are those of every turn
        if args.hands_free:
            return _hands_free(pipeline, printer)
        if not interactive:
            if args.once:
                print("listening: ask your question", file=err)
            pipeline.run_turn(on_event=printer.event)
            return 0
        fd = sys.stdin.fileno()
        with _terminal(fd, out) as releases:
            try:
                return _Loop(pipeline, printer, fd, releases).run()
            except KeyboardInterrupt as e:  # Ctrl+C quits cleanly, like Esc; kill and a closed terminal too
                pipeline.interrupt()  # the reply stops and is saved as stopped when `close` waits for it
                with contextlib.suppress(OSError):
                    printer.clear_meter()
                if isinstance(e, Terminated):
                    raise  # exit code 143 or 129
                return 0
    finally:
        pipeline.close()
        tools.close()
