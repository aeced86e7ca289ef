"""Hands-free conversation: turns begin and end on voice activity, no key.

One state machine, the same for every front end:

```
stopped ─start─► listening ─speech─► hearing you ─silence (end_of_turn_s)─► thinking ─first audio─► speaking
                  ▲  ▲  ▲                 │                                  │                        │
                  │  │  └─ interrupt ─────┘                                  │                        │
                  │  └──── nothing heard, a text-only reply, a stopped reply ┘                        │
                  └─────────────────────── the reply has played, and echo_tail_s after it ────────────┘
thinking, speaking ─barge-in (barge_in = "headset": speech louder than the reply's echo)─► hearing you
any state ─stop─► stopped
```

`HandsFreeState` is the enum, `TRANSITIONS` the moves it may make, `HandsFree._move` the one place
that moves it, and `StateChanged` the event announcing each move. Its own voice is not taken for
the user: while it thinks and speaks, and for `echo_tail_s` after the reply has played, the
microphone is ignored, unless `barge_in = "headset"`, where speech that `EchoGate` finds louder
than the reply's expected echo interrupts it. A barge-in while the last turn's words are still
decoded, or while that turn still waits for the reply before it to stop, keeps them: they are
sent, their reply stopped before it begins, and the next reply reads them. Turns not answered
when the session stops are dropped, unsent. Esc while thinking drops the turn if its words have
not been shown yet, else stops its reply (`VoicePipeline` says how a stop before the reply lands).

The microphone is read by one thread for the whole session; each 32 ms frame goes through the
Silero VAD (`vad.SileroDetector`) and the endpointing rules (`vad.Endpointer`). A turn's audio
(with 0.3 s from before the speech started) is pushed into the pipeline as a recording
(`PushIn`), so the turn is transcribed, prefilled and answered by the same `VoicePipeline` as a
push-to-talk turn: `start_recording` and `respond()` at the onset (the turn is taken at once, so
the next one's recording never drops it), `stop_recording` at the end of the turn, and a second
thread reads each turn's events in order. A file as the microphone (`--input-wav`) is
paused while the assistant replies; a real microphone goes on and its frames are dropped. While
the session runs it lends the pipeline its own config (no level-meter auto-stop: the VAD ends
turns) and, with barge-in, an `EchoTap` around the speaker; `stop()` gives both back.

    session = HandsFree(pipeline)       # a VoicePipeline with a microphone (or a wav file)
    session.start()                     # listening
    for event in session.events():      # blocking, in a worker thread; ends once stopped
        ...                             # StateChanged, and each turn's Heard, Text, Speaking, ..., TurnDone
    session.interrupt()                 # Esc: stop the reply (or drop the turn being heard), listen again
    session.stop()                      # any thread: stop listening and replying; events() ends
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from edgeassist.errors import UsageError
from edgeassist.reply import IllegalTransition
from edgeassist.speech.audio import AudioIn, AudioOut
from edgeassist.speech.samples import Resampler, rms_dbfs
from edgeassist.voice.config import VoiceConfig
from edgeassist.voice.events import Speaking, TurnDone, VoiceEvent
from edgeassist.voice.pipeline import TurnEvents, VoicePipeline
from edgeassist.voice.vad import (
    FRAME,
    FRAME_S,
    VAD_RATE,
    EchoGate,
    EndOfTurn,
    EndpointConfig,
    Endpointer,
    FrameCutter,
    Onset,
    SileroDetector,
    SpeechDetector,
)

PRE_ROLL_S = 0.3
"""Audio kept from before the speech started (Silero notices a word a frame or two in)."""
HISTORY_S = 3.0
"""Frames kept while listening, for the pre-roll of a turn whose speech began a while before its onset."""


class HandsFreeState(Enum):
    """Where a hands-free conversation is."""

    STOPPED = "stopped"
    """Not listening (before `start()`, after `stop()`, or when the input ended)."""
    LISTENING = "listening"
    """The microphone is live, waiting for speech."""
    HEARING = "hearing"
    """Hearing you: a turn is being recorded (and transcribed as it goes)."""
    THINKING = "thinking"
    """The turn ended: the transcript is finished and the reply generated."""
    SPEAKING = "speaking"
    """The reply plays (and the room's echo dies away)."""

    @property
    def label(self) -> str:
        """How a front end shows it."""
        return _LABELS[self]


_LABELS = {
    HandsFreeState.STOPPED: "off",
    HandsFreeState.LISTENING: "listening",
    HandsFreeState.HEARING: "hearing you",
    HandsFreeState.THINKING: "thinking",
    HandsFreeState.SPEAKING: "speaking",
}

_S = HandsFreeState
_CAN_HEAR = frozenset({_S.LISTENING, _S.THINKING, _S.SPEAKING})
_AFTER = {"complete": "replied", "cancelled": "stopped", "empty": "nothing heard"}
TRANSITIONS: Mapping[HandsFreeState, frozenset[HandsFreeState]] = {
    _S.STOPPED: frozenset({_S.LISTENING}),
    _S.LISTENING: frozenset({_S.HEARING, _S.STOPPED}),
    _S.HEARING: frozenset({_S.THINKING, _S.LISTENING, _S.STOPPED}),
    _S.THINKING: frozenset({_S.SPEAKING, _S.LISTENING, _S.HEARING, _S.STOPPED}),
    _S.SPEAKING: frozenset({_S.LISTENING, _S.HEARING, _S.STOPPED}),
}
"""The moves a hands-free conversation may make: from each state, the states it may go to next."""


@dataclass(frozen=True)
class StateChanged:
    """The conversation moved to `state`; every front end shows this one line of truth."""

    state: HandsFreeState
    """Where it is now."""
    previous: HandsFreeState
    """Where it was."""
    reason: str
    """Why, in a few words: speech, end of turn, reply, played, nothing heard, barge-in, interrupted, stopped..."""


HandsFreeEvent = StateChanged | VoiceEvent
"""What `HandsFree.events()` yields: state changes, and each turn's voice events (TurnDone last)."""


# -- audio plumbing --------------------------------------------------------------------------------


class PushIn:
    """An `AudioIn` fed by another thread: the hands-free listener pushes a turn's frames into it,
    and the pipeline's recording reads them. It ends at `end()`, never earlier, so a turn's last
    frames always reach the transcriber."""

    def __init__(self, sample_rate: int = VAD_RATE, *, realtime: bool = True) -> None:
        """Empty; `realtime` as the microphone it relays."""
        self.sample_rate = sample_rate
        self.realtime = realtime
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue()
        self._ended = False

    def push(self, samples: np.ndarray) -> None:
        """Hand on more audio (ignored once ended)."""
        if not self._ended:
            self._queue.put(samples)

    def end(self) -> None:
        """No more audio: `record` returns once it has delivered what was pushed."""
        if not self._ended:
            self._ended = True
            self._queue.put(None)

    def record(self, on_chunk: Callable[[np.ndarray], None], stop: threading.Event) -> None:
        """Deliver what is pushed until `end()` (a stop alone does not cut the turn short)."""
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            on_chunk(chunk)


class EchoTap:
    """An `AudioOut` that plays in 40 ms blocks and tells an `EchoGate` what each block was and when
    the speaker took it (block by block, so the gate's clock follows the device's, not the chunk's)."""

    BLOCK_S = 0.04

    def __init__(self, inner: AudioOut, gate: EchoGate) -> None:
        """Wrap the speaker."""
        self.inner = inner
        self.gate = gate
        self.realtime = inner.realtime

    def play(self, samples: np.ndarray, sample_rate: int, stop: threading.Event) -> bool:
        """Play block by block, recording each as the speaker takes it."""
        block = max(1, int(sample_rate * self.BLOCK_S))
        for i in range(0, len(samples), block):
            piece = samples[i : i + block]
            if not self.inner.play(piece, sample_rate, stop):
                return False
            self.gate.played(piece, sample_rate, time.perf_counter() - len(piece) / sample_rate)
        return True

    def drain(self, stop: threading.Event) -> bool:
        """The inner speaker's drain."""
        return self.inner.drain(stop)

    def close(self) -> None:
        """The inner speaker's close."""
        self.inner.close()


@dataclass
class _Turn:
    """One detected turn, from its onset to its reply."""

    audio: PushIn
    speech_end_frame: int | None = None
    decided_frame: int | None = None
    abandoned: bool = False

    @property
    def silence_s(self) -> float:
        """Audio from the end of speech to the end-of-turn decision."""
        if self.speech_end_frame is None or self.decided_frame is None:
            return 0.0
        return (self.decided_frame - self.speech_end_frame - 1) * FRAME_S


@dataclass
class _Listener:
    """What the capture thread keeps between frames (touched by that thread only)."""

    endpointer: Endpointer
    cutter: FrameCutter = field(default_factory=FrameCutter)
    history: collections.deque[tuple[int, np.ndarray]] = field(
        default_factory=lambda: collections.deque(maxlen=int(HISTORY_S / FRAME_S))
    )
    epoch: int = -1


class _End:
    """The last item of the events queue."""


# -- the conversation ------------------------------------------------------------------------------


class HandsFree:
    """A hands-free conversation over a `VoicePipeline`: voice activity starts and ends each turn.

    Thread-safe controls (`start`, `interrupt`, `stop`); events through `events()` (an iterator for a
    worker thread) or, when given, the `on_event` callback, called from the session's threads with
    its lock held (it must not block: post a message, never wait for the UI thread).
    """

    def __init__(
        self,
        pipeline: VoicePipeline,
        *,
        audio_in: AudioIn | None = None,
        config: VoiceConfig | None = None,
        detector: SpeechDetector | None = None,
        on_event: Callable[[HandsFreeEvent], None] | None = None,
    ) -> None:
        """Wire it; nothing listens before `start()`. `audio_in` (default: the pipeline's) is read for
        the whole session; `config` (default: the pipeline's) gives the endpointing and barge-in
        settings; `detector` (default: Silero) rates each frame."""
        self.pipeline = pipeline
        self.audio_in = audio_in or pipeline.audio_in
        self.config = config or pipeline.config
        self.detector: SpeechDetector = detector or SileroDetector()
        self.on_event = on_event
        c = self.config
        self.endpoint = EndpointConfig(
            threshold=c.vad_threshold,
            neg_threshold=max(0.01, c.vad_threshold - 0.15),
            floor_db=c.speech_floor_db,
            min_speech_s=c.min_speech_s,
            end_of_turn_s=c.end_of_turn_s,
            max_turn_s=max(1.0, c.max_record_s - 1.0),  # before the recording's own limit
        )
        self.gate = EchoGate(c.barge_in_margin_db) if c.barge_in == "headset" else None
        """What tells the user's voice from the reply's echo (None: the mic is deaf while it replies)."""
        self.turns: list[TurnDone] = []
        """Every turn answered so far (its `TurnDone`, timings filled from the voice activity)."""
        self.error: BaseException | None = None
        """What stopped the session, when something failed."""
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._state = HandsFreeState.STOPPED
        self._epoch = 0  # counts entries to LISTENING: the capture thread starts afresh on each
        self._turn: _Turn | None = None  # the turn being heard or answered
        self._pending: collections.deque[tuple[_Turn, TurnEvents]] = collections.deque()  # turns not answered yet
        self._input_ended = False
        self._closing = False
        self._started = False
        self._capture_stop = threading.Event()
        self._events: queue.Queue[HandsFreeEvent | _End] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._realtime = bool(self.audio_in is not None and self.audio_in.realtime)
        self._saved_out: AudioOut | None = None
        self._saved_config: VoiceConfig | None = None

    # -- the state machine ---------------------------------------------------------------------

    @property
    def state(self) -> HandsFreeState:
        """Where the conversation is now."""
        return self._state

    def _move(self, new: HandsFreeState, reason: str) -> None:
        """The one place the state changes: check the move, make it, announce it."""
        with self._lock:
            old = self._state
            if new is old:
                return
            if new not in TRANSITIONS[old]:
                raise IllegalTransition(f"hands-free cannot go from {old.value} to {new.value} ({reason})")
            self._state = new
            if new is HandsFreeState.LISTENING:
                self._epoch += 1
            self._cond.notify_all()
            self._emit(StateChanged(new, old, reason))

    def _emit(self, event: HandsFreeEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
        else:
            self._events.put(event)

    # -- controls ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the VAD and start listening (once per session)."""
        if self.audio_in is None:
            raise UsageError("hands-free needs a microphone or a wav file as input")
        with self._lock:
            if self._started:
                raise UsageError("this hands-free session has already been started")
            self._started = True
        self.detector.load()  # a missing speech extra shows now, as one line
        with self._lock:
            if self._closing:
                return  # stopped while the VAD loaded: nothing was lent, nothing listens
            self._saved_config = self.pipeline.config
            self.pipeline.config = hands_free_config(self.pipeline.config)  # restored by stop()
            out = self.pipeline.audio_out
            if self.gate is not None and out is not None:
                self._saved_out = out
                self.pipeline.audio_out = EchoTap(out, self.gate)
            self._move(HandsFreeState.LISTENING, "started")
            for target, name in ((self._capture, "handsfree-listen"), (self._respond_loop, "handsfree-reply")):
                th = threading.Thread(target=target, name=name, daemon=True)
                self._threads.append(th)
                th.start()

    def interrupt(self) -> None:
        """Stop the reply now (or drop the turn being heard, or one whose words are still decoded) and listen again."""
        with self._lock:
            turn = self._turn
            if self._state is HandsFreeState.HEARING and turn is not None:
                turn.abandoned = True
                turn.audio.end()
                self._turn = None
                self.pipeline.interrupt()
                self._move(HandsFreeState.LISTENING, "interrupted")
                return
        self.pipeline.interrupt()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop listening and replying; `events()` ends. Safe to call more than once, from any thread."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._capture_stop.set()
            turn = self._turn
            if turn is not None:
                turn.abandoned = True
                turn.audio.end()
            self._cond.notify_all()
        self.pipeline.interrupt()
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(timeout)
        with self._lock:
            unanswered = list(self._pending)
            self._pending.clear()
        for _, events in unanswered:
            events.drop()
        if self._saved_out is not None:
            self.pipeline.audio_out = self._saved_out
        if self._saved_config is not None:
            self.pipeline.config = self._saved_config
        with self._lock:
            self._move(HandsFreeState.STOPPED, "error" if self.error else "stopped")
            self._events.put(_End())

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the session has stopped (a file as input: when it has all been answered)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._state is HandsFreeState.STOPPED and self._closing, timeout)

    def events(self) -> Iterator[HandsFreeEvent]:
        """Every event in order, until the session stops (blocking: read it in a worker thread). An error
        that stopped the session is raised at the end."""
        if self.on_event is not None:
            raise UsageError("this session hands its events to on_event")
        while True:
            item = self._events.get()
            if isinstance(item, _End):
                break
            yield item
        if self.error is not None:
            raise self.error

    # -- the microphone's thread ---------------------------------------------------------------

    def _capture(self) -> None:
        assert self.audio_in is not None
        listener = _Listener(Endpointer(self.endpoint))
        rate = self.audio_in.sample_rate
        resampler = Resampler(rate, VAD_RATE) if rate != VAD_RATE else None
        self.detector.reset()

        def on_chunk(chunk: np.ndarray) -> None:
            now = time.perf_counter()
            x = resampler.process(chunk) if resampler is not None else np.asarray(chunk, dtype=np.float32)
            frames = list(listener.cutter.feed(x))
            after = listener.cutter.pending
            for k, frame in enumerate(frames):
                # When the frame's last sample was captured: the chunk's arrival, less what followed it.
                at = now - (after + (len(frames) - 1 - k) * FRAME) / VAD_RATE
                self._frame(listener, frame, at)
                if self._closing:
                    return

        try:
            self.audio_in.record(on_chunk, self._capture_stop)
        except BaseException as e:  # noqa: BLE001 - raised by events() once stopped
            self._fail(e)
        finally:
            self._input_done(listener)

    def _frame(self, ls: _Listener, frame: np.ndarray, at: float) -> None:
        """One 32 ms frame: rate it, and move the conversation when it starts or ends a turn."""
        probability = self.detector.probability(frame)
        level = rms_dbfs(frame)
        with self._lock:
            state, epoch, turn = self._state, self._epoch, self._turn
        if epoch != ls.epoch and state is HandsFreeState.LISTENING:  # listening afresh: forget what came before
            ls.epoch = epoch
            ls.endpointer.reset()
            ls.history.clear()
        index = ls.endpointer.frame
        if state is HandsFreeState.HEARING and turn is not None:
            turn.audio.push(frame)
            boundary = ls.endpointer.feed(probability, level)
            if isinstance(boundary, EndOfTurn):
                self._end_turn(turn, boundary)
            return
        if state is HandsFreeState.LISTENING:
            allowed = True
        elif state in (HandsFreeState.THINKING, HandsFreeState.SPEAKING) and self.gate is not None:
            allowed = self.gate.allows(level, at)
        else:
            ls.endpointer.feed(0.0, level)  # deaf: the frame counts, as silence
            return
        ls.history.append((index, frame))
        boundary = ls.endpointer.feed(probability, level, allowed=allowed)
        if isinstance(boundary, Onset):
            self._begin_turn(ls, boundary, barge_in=state is not HandsFreeState.LISTENING)

    def _begin_turn(self, ls: _Listener, onset: Onset, *, barge_in: bool) -> None:
        first = onset.start - round(PRE_ROLL_S / FRAME_S)
        audio = PushIn(VAD_RATE, realtime=self._realtime)
        for i, f in ls.history:
            if i >= first:
                audio.push(f)
        ls.history.clear()
        turn = _Turn(audio)
        with self._lock:
            if self._closing or self._state not in _CAN_HEAR:
                return  # the state moved while this frame was rated
            self.pipeline.start_recording(audio)  # while it replies: barge-in, the reply stops at once
            # Taken now, not when the replies' thread is free: a turn still waiting for it (the last reply
            # slow to stop) is not dropped by the next one's recording; its words are kept.
            self._pending.append((turn, self.pipeline.respond(empty_notice=None)))
            self._turn = turn
            self._move(HandsFreeState.HEARING, "barge-in" if barge_in else "speech")

    def _end_turn(self, turn: _Turn, end: EndOfTurn) -> None:
        turn.speech_end_frame, turn.decided_frame = end.last, end.frames
        turn.audio.end()
        with self._lock:
            if self._turn is not turn or self._state is not HandsFreeState.HEARING:
                return
            self.pipeline.stop_recording()
            self._move(HandsFreeState.THINKING, "end of turn")
            if not self._realtime:  # a file waits while the assistant answers, as a person would
                self._cond.wait_for(lambda: self._closing or self._state is HandsFreeState.LISTENING)

    def _input_done(self, ls: _Listener) -> None:
        """The input ended (a file) or the session is stopping: end a turn in progress, then let the
        replies finish."""
        with self._lock:
            turn = self._turn
            hearing = self._state is HandsFreeState.HEARING and turn is not None
        if hearing and turn is not None and not self._closing:
            end = ls.endpointer.finish()
            self._end_turn(turn, end or EndOfTurn(ls.endpointer.frame - 1, ls.endpointer.frame))
        with self._lock:
            self._input_ended = True
            self._cond.notify_all()

    # -- the replies' thread -------------------------------------------------------------------

    def _respond_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: bool(self._pending) or self._closing or self._idle_end())
                    if not self._pending or self._closing:
                        break
                    turn, events = self._pending.popleft()
                self._answer(turn, events)
        except BaseException as e:  # noqa: BLE001 - raised by events() once stopped
            self._fail(e)
        finally:
            if not self._closing:
                self.stop()  # the input ended and was answered, or something failed

    def _idle_end(self) -> bool:
        """The input has ended and no turn is being heard or answered."""
        return self._input_ended and not self._pending and self._state is not HandsFreeState.HEARING

    def _answer(self, turn: _Turn, events: Iterator[VoiceEvent]) -> None:
        """Forward one turn's events, moving the state as the reply goes."""
        spoke = False
        status = "cancelled"
        for event in events:
            if isinstance(event, Speaking) and not spoke:
                spoke = True
                with self._lock:
                    if self._turn is turn and self._state is HandsFreeState.THINKING:
                        self._move(HandsFreeState.SPEAKING, "reply")
            if isinstance(event, TurnDone):
                event = self._timed(turn, event)
                status = event.status
                if not turn.abandoned:
                    self.turns.append(event)
            with self._lock:
                self._emit(event)
        if spoke and self._realtime and self.config.echo_tail_s > 0:
            with self._cond:  # the room's echo dies away; a stop ends the wait
                self._cond.wait_for(lambda: self._closing or self._turn is not turn, self.config.echo_tail_s)
        with self._lock:
            if self._turn is turn and self._state in (HandsFreeState.THINKING, HandsFreeState.SPEAKING):
                self._turn = None
                self._move(HandsFreeState.LISTENING, _AFTER[status] if status != "complete" or not spoke else "played")

    def _timed(self, turn: _Turn, done: TurnDone) -> TurnDone:
        """The turn's timings measured from the VAD's end of speech (not the level meter's)."""
        t = done.timings
        t.release_lag_s = turn.silence_s
        t.speech_end_to_first_audio_s = turn.silence_s + t.first_audio_s if t.first_audio_s is not None else None
        return done

    def _fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None and not self._closing:
                self.error = error
            self._cond.notify_all()


# -- simulation: the bench and the tests -----------------------------------------------------------


class PoliteUser:
    """An `AudioIn` that says each of its questions once the conversation is listening again, like a
    person waiting for the answer; silence otherwise, paced like a microphone (`realtime`) or not.
    It ends after the last question has been answered, or with `keep_open` goes on with silence
    until stopped (a microphone in a quiet room). For the bench and the tests."""

    def __init__(
        self,
        session_state: Callable[[], HandsFreeState],
        questions: Sequence[np.ndarray],
        *,
        realtime: bool = True,
        lead_s: float = 0.3,
        tail_s: float = 1.5,
        block: int = FRAME,
        keep_open: bool = False,
    ) -> None:
        """`session_state` reads the conversation's state; each question (16 kHz) is preceded by
        `lead_s` of silence and followed by `tail_s` (more than the end-of-turn silence)."""
        self.sample_rate = VAD_RATE
        self.realtime = realtime
        self.state = session_state
        self.questions = [np.asarray(q, dtype=np.float32) for q in questions]
        self.lead = int(lead_s * VAD_RATE)
        self.tail = int(tail_s * VAD_RATE)
        self.block = block
        self.keep_open = keep_open
        self.played = threading.Event()
        """Every question has gone into the microphone."""

    def record(self, on_chunk: Callable[[np.ndarray], None], stop: threading.Event) -> None:
        """Silence until listening, then the next question; ends once all have been asked and answered."""
        silence = np.zeros(self.block, dtype=np.float32)
        pending = list(self.questions)
        speech = np.zeros(0, dtype=np.float32)
        t0 = time.perf_counter()
        sent = 0
        while not stop.is_set():
            state = self.state()
            if not len(speech) and state is HandsFreeState.LISTENING and pending:
                q = pending.pop(0)
                speech = np.concatenate([np.zeros(self.lead, np.float32), q, np.zeros(self.tail, np.float32)])
            elif not len(speech) and state is HandsFreeState.LISTENING and not self.keep_open:
                return
            if len(speech):
                chunk, speech = speech[: self.block], speech[self.block :]
            else:
                chunk = silence
            if self.realtime:
                sent += len(chunk)
                wait = t0 + sent / VAD_RATE - time.perf_counter()
                if wait > 0 and stop.wait(wait):
                    return
            elif not len(speech) and state is not HandsFreeState.LISTENING and stop.wait(0.002):
                return  # (not paced: the answer is awaited in short waits, no state change announces it)
            on_chunk(chunk)
            if not pending and not len(speech):
                self.played.set()


def simulate_conversation(
    pipeline: VoicePipeline,
    questions: Sequence[np.ndarray],
    *,
    realtime: bool = True,
    config: VoiceConfig | None = None,
    detector: SpeechDetector | None = None,
    on_event: Callable[[HandsFreeEvent], None] | None = None,
    timeout: float | None = None,
) -> list[TurnDone]:
    """A hands-free conversation of `questions` (16 kHz speech), each asked once the assistant listens
    again; returns every turn's `TurnDone`. This is what the bench measures."""
    box: list[HandsFree] = []
    user = PoliteUser(lambda: box[0].state, questions, realtime=realtime)
    session = HandsFree(pipeline, audio_in=user, config=config, detector=detector)
    box.append(session)
    session.start()
    try:
        for event in session.events():
            if on_event is not None:
                on_event(event)
    finally:
        session.stop(timeout or 30.0)
    return list(session.turns)


def hands_free_config(config: VoiceConfig) -> VoiceConfig:
    """`config` as hands-free needs it: the end of a turn is the VAD's to decide, not the level meter's."""
    return dataclasses.replace(config, end_silence_s=None)
