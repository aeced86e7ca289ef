"""The tool loop in `Conversation`: steps, calls, policies, limits, stopping, saving and reading back.

A scripted engine stands behind the real `ChatEngine` contract and records each step's messages,
so the tests see exactly what the model would be given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from edgeassist.chat import Conversation
from edgeassist.config import ToolsSettings, load_settings, save_tool_policy
from edgeassist.engine.base import (
    Capabilities,
    Done,
    GenerationOptions,
    Message,
    Notice,
    Stats,
    Text,
    ToolCall,
    ToolSpec,
)
from edgeassist.errors import ConfigError, ToolError
from edgeassist.store import Store
from edgeassist.tools import ConsentRequest, Tool, Toolbox, ToolResult, ToolStarted


class ScriptedEngine:
    """A `ChatEngine` whose steps are scripted: each is some text and the calls it makes."""

    name = "scripted-qwen3.5"
    backend = "cpu"
    n_ctx = 8192
    loaded = True

    def __init__(self, steps: Sequence[tuple[str, Sequence[ToolCall]]], *, tools: bool = True) -> None:
        self.steps = list(steps)
        self.seen: list[tuple[list[Message], GenerationOptions]] = []
        self._tools = tools

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(thinking=True, tools=self._tools)

    def load(self) -> float:
        return 0.0

    def close(self) -> None:
        pass

    def count_tokens(self, messages: Sequence[Message], options: GenerationOptions) -> int:
        return 20 + sum(len(m["content"]) for m in messages) // 4

    def prefill(self, *args: Any, **kw: Any) -> int:
        return 0

    def draft(self, *args: Any, **kw: Any) -> int:
        return 0

    def held(self) -> Any:
        return nullcontext()

    def stepwise(self) -> Any:
        return nullcontext()

    def stream(
        self, messages: Sequence[Message], options: GenerationOptions, cancel: threading.Event | None = None
    ) -> Iterator[Any]:
        self.seen.append(([dict(m) for m in messages], options))  # type: ignore[misc]
        text, calls = self.steps.pop(0) if self.steps else ("done.", [])
        stats = Stats(model=self.name, finish_reason="stop")
        if text:
            yield Text(text)
        if options.tools and options.tool_choice != "none":
            yield from calls
        yield Done(stats)


def tool(name: str, run: Any = None, policy: str = "allow", source: str = "built-in") -> Tool:
    spec = ToolSpec(name, f"the {name} tool", {"type": "object", "properties": {"x": {"type": "string"}}})
    return Tool(spec, source, policy, run or (lambda args, cancel: f"{name} says {args.get('x', '')}"))  # type: ignore[arg-type]


def box(*tools: Tool, **settings: Any) -> Toolbox:
    return Toolbox(ToolsSettings(**settings), tools=tools)


def test_a_call_runs_and_its_result_reaches_the_next_step_as_a_tool_message() -> None:
    engine = ScriptedEngine([("Let me look.", [ToolCall("echo", {"x": "hi"})]), ("It says hi.", [])])
    convo = Conversation(engine, system_prompt="sys", tools=box(tool("echo")))
    events = list(convo.send("what does echo say?"))
    results = [e.use for e in events if isinstance(e, ToolResult)]
    assert [(u.name, u.outcome, u.result) for u in results] == [("echo", "ok", "echo says hi")]
    assert sum(isinstance(e, Done) for e in events) == 1  # one reply, however many steps
    assert [e.text for e in events if isinstance(e, Text)] == ["Let me look.", "It says hi."]
    second = engine.seen[1][0]
    assert second[-2]["role"] == "assistant" and second[-2]["content"] == "Let me look."
    assert second[-2]["tool_calls"] == [{"type": "function", "function": {"name": "echo", "arguments": {"x": "hi"}}}]
    assert second[-1] == {"role": "tool", "content": "echo says hi"}
    assert engine.seen[0][1].tools == engine.seen[1][1].tools != ()
    assert [t.role for t in convo.turns] == ["user", "assistant", "tool", "assistant"]


def test_parallel_calls_in_one_step_all_run_in_order_and_attach_to_that_step() -> None:
    calls = [ToolCall("echo", {"x": "a"}), ToolCall("echo", {"x": "b"}), ToolCall("upper", {"x": "c"})]
    upper = tool("upper", lambda args, cancel: args["x"].upper())
    engine = ScriptedEngine([("", calls), ("ok", [])])
    convo = Conversation(engine, tools=box(tool("echo"), upper))
    uses = [e.use for e in convo.send("go") if isinstance(e, ToolResult)]
    assert [u.result for u in uses] == ["echo says a", "echo says b", "C"]
    msgs = engine.seen[1][0]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "tool"]
    assert [c["function"]["arguments"]["x"] for c in msgs[1]["tool_calls"]] == ["a", "b", "c"]


def test_a_multi_step_loop_stops_offering_calls_at_the_limit() -> None:
    step = ("", [ToolCall("echo", {"x": "again"})])
    engine = ScriptedEngine([step] * 10)
    convo = Conversation(engine, tools=box(tool("echo"), max_calls=3))
    events = list(convo.send("loop"))
    assert sum(isinstance(e, ToolResult) and e.use.outcome == "ok" for e in events) == 3
    choices = [opts.tool_choice for _, opts in engine.seen]
    assert choices == ["auto", "auto", "auto", "none"]  # the fourth step must answer
    assert isinstance(events[-1], Done)


def test_calls_beyond_the_limit_in_one_step_are_refused_and_the_model_is_told() -> None:
    engine = ScriptedEngine([("", [ToolCall("echo", {"x": str(i)}) for i in range(4)])])
    convo = Conversation(engine, tools=box(tool("echo"), max_calls=2))
    uses = [e.use for e in convo.send("go") if isinstance(e, ToolResult)]
    assert [u.outcome for u in uses] == ["ok", "ok", "denied", "denied"]
    assert "limit of 2" in uses[-1].result


def test_required_applies_to_the_first_step_only() -> None:
    engine = ScriptedEngine([("", [ToolCall("echo", {"x": "1"})]), ("fine", [])])
    convo = Conversation(engine, tools=box(tool("echo")), options=GenerationOptions(tool_choice="required"))
    list(convo.send("go"))
    assert [o.tool_choice for _, o in engine.seen] == ["required", "auto"]


# -- policies ---------------------------------------------------------------------------------------


def _answering(convo: Conversation, text: str, decision: str | None) -> list[Any]:
    out = []
    for event in convo.send(text):
        if isinstance(event, ConsentRequest) and decision is not None:
            event.answer(decision)  # type: ignore[arg-type]
        out.append(event)
    return out


@pytest.mark.parametrize(
    ("decision", "outcome", "asks_again"),
    [("once", "ok", True), ("chat", "ok", False), ("deny", "denied", True), (None, "denied", True)],
)
def test_ask_policy_paths(decision: str | None, outcome: str, asks_again: bool) -> None:
    ran: list[str] = []
    echo = tool("echo", lambda args, cancel: ran.append(args["x"]) or "ran", policy="ask")
    engine = ScriptedEngine([("", [ToolCall("echo", {"x": "1"})]), ("a", []), ("", [ToolCall("echo", {"x": "2"})])])
    convo = Conversation(engine, tools=box(echo))
    first = _answering(convo, "one", decision)
    request = next(e for e in first if isinstance(e, ConsentRequest))
    assert (request.tool, request.source, request.arguments) == ("echo", "built-in", {"x": "1"})
    assert [e.use.outcome for e in first if isinstance(e, ToolResult)] == [outcome]
    assert any(isinstance(e, ToolStarted) for e in first) == (outcome == "ok")
    assert ran == (["1"] if outcome == "ok" else [])
    if outcome == "denied":  # the refusal is the tool's result: the model can answer without it
        assert engine.seen[1][0][-1]["role"] == "tool" and "did not allow" in engine.seen[1][0][-1]["content"]
    second = _answering(convo, "two", "once")
    assert any(isinstance(e, ConsentRequest) for e in second) == asks_again


def test_always_saves_allow_to_the_config_file_and_it_is_read_back(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('# mine\n[model]\nn_ctx = 2048\n\n[tools.policy]\n"other" = "deny"\n')
    echo = tool("echo", policy="ask")
    tools = Toolbox(ToolsSettings(), tools=[echo], save_policy=lambda n, p: save_tool_policy(config, n, p))
    engine = ScriptedEngine([("", [ToolCall("echo", {"x": "1"})]), ("a", []), ("", [ToolCall("echo", {"x": "2"})])])
    convo = Conversation(engine, tools=tools)
    assert any(isinstance(e, ToolResult) and e.use.outcome == "ok" for e in _answering(convo, "one", "always"))
    assert not any(isinstance(e, ConsentRequest) for e in _answering(convo, "two", None))
    settings = load_settings(config)
    assert settings.tools.policy == {"echo": "allow", "other": "deny"}
    assert settings.model.n_ctx == 2048 and config.read_text().startswith("# mine")
    assert oct(config.stat().st_mode & 0o777) == "0o600"


def test_a_config_file_the_choice_cannot_be_added_to_is_left_alone(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    original = 'tools = { policy = { other = "deny" } }\n'
    config.write_text(original)
    with pytest.raises(ConfigError, match="by hand"):
        save_tool_policy(config, "echo", "allow")
    assert config.read_text() == original


def test_deny_policy_never_asks_and_a_denied_tool_is_not_even_offered() -> None:
    engine = ScriptedEngine([("", [ToolCall("echo", {"x": "1"})]), ("ok", [])])
    tools = box(tool("echo"), tool("secret"), policy={"secret": "deny"})
    convo = Conversation(engine, tools=tools)
    assert [s.name for s in convo.offered_tools()] == ["echo"]
    # A call of a tool not offered (a model that made one up) is an error result, never a run.
    engine2 = ScriptedEngine([("", [ToolCall("secret", {"x": "1"})]), ("ok", [])])
    uses = [e.use for e in Conversation(engine2, tools=tools).send("go") if isinstance(e, ToolResult)]
    assert [(u.outcome, u.result) for u in uses] == [("error", "error: there is no tool `secret`")]


def test_policy_order_server_and_flags() -> None:
    mcp = tool("time.now", policy="ask", source="time")
    shell = tool("run_shell", policy="ask")
    tools = Toolbox(ToolsSettings(policy={"time": "allow", "run_shell": "allow"}), tools=[mcp, shell])
    tools.start()
    assert tools.policy("time.now") == "allow"  # by its server
    assert tools.policy("run_shell") == "ask"  # the shell always asks
    assert tools.choices("run_shell") == ("once", "deny")
    flagged = Toolbox(ToolsSettings(), tools=[mcp], allowed=["time"])
    flagged.start()
    assert flagged.policy("time.now") == "allow"
    denied = Toolbox(ToolsSettings(policy={"time": "deny"}), tools=[mcp], allowed=["time.now"])
    assert denied.tools == []  # deny beats everything


def test_an_answer_not_offered_counts_as_a_refusal() -> None:
    request = ConsentRequest("run_shell", "built-in", {}, choices=("once", "deny"))
    request.answer("always")
    assert request.decision == "deny"


# -- results are text -----------------------------------------------------------------------------


def test_results_are_capped_and_errors_go_back_to_the_model() -> None:
    def fails(args: Mapping[str, Any], cancel: threading.Event) -> str:
        raise ToolError("no such city")

    def crashes(args: Mapping[str, Any], cancel: threading.Event) -> str:
        raise RuntimeError("bug")

    engine = ScriptedEngine([("", [ToolCall("big", {}), ToolCall("fails", {}), ToolCall("crashes", {})]), ("ok", [])])
    tools = box(tool("big", lambda a, c: "x" * 500), tool("fails", fails), tool("crashes", crashes), result_chars=100)
    uses = [e.use for e in Conversation(engine, tools=tools).send("go") if isinstance(e, ToolResult)]
    assert uses[0].result.startswith("x" * 100) and "400 more characters were cut" in uses[0].result
    assert (uses[1].outcome, uses[1].result) == ("error", "error: no such city")
    assert (uses[2].outcome, uses[2].result) == ("error", "error: RuntimeError: bug")


# -- stopping ---------------------------------------------------------------------------------------


def test_a_stop_while_consent_is_asked_ends_the_reply_stopped_and_saves_the_call(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    engine = ScriptedEngine([("", [ToolCall("echo", {"x": "1"})]), ("never", [])])
    convo = Conversation.open(engine, store, "c", tools=box(tool("echo", policy="ask")))
    cancel = threading.Event()
    events = []
    for event in convo.send("go", cancel):
        if isinstance(event, ConsentRequest):
            cancel.set()  # Esc while the dialog is open
            event.answer("once")
        events.append(event)
    assert isinstance(events[-1], Done) and events[-1].stats.finish_reason == "cancelled"
    assert [e.use.outcome for e in events if isinstance(e, ToolResult)] == ["stopped"]
    assert len(engine.seen) == 1  # no second step
    saved = store.messages(convo.chat.id)  # type: ignore[union-attr]
    assert [m.role for m in saved] == ["user", "assistant", "tool"]
    assert saved[2].tool is not None and saved[2].tool["outcome"] == "stopped"


def test_a_stop_while_a_tool_runs_reaches_the_tool() -> None:
    started = threading.Event()

    def slow(args: Mapping[str, Any], cancel: threading.Event) -> str:
        started.set()
        assert cancel.wait(10)
        raise ToolError("stopped")

    engine = ScriptedEngine([("", [ToolCall("slow", {})]), ("never", [])])
    convo = Conversation(engine, tools=box(tool("slow", slow)))
    cancel = threading.Event()
    threading.Thread(target=lambda: started.wait(10) and cancel.set(), daemon=True).start()
    events = list(convo.send("go", cancel))
    assert [e.use.outcome for e in events if isinstance(e, ToolResult)] == ["stopped"]
    assert events[-1].stats.finish_reason == "cancelled"  # type: ignore[union-attr]


def test_closing_the_stream_mid_call_still_saves_the_call(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    engine = ScriptedEngine([("", [ToolCall("echo", {"x": "1"})]), ("never", [])])
    convo = Conversation.open(engine, store, "c", tools=box(tool("echo", policy="ask")))
    stream = convo.send("go")
    for event in stream:
        if isinstance(event, ConsentRequest):
            stream.close()  # the front end went away (Ctrl+C) while the question was open
            break
    saved = store.messages(convo.chat.id)  # type: ignore[union-attr]
    assert [m.role for m in saved] == ["user", "assistant", "tool"]
    assert saved[2].tool["outcome"] == "stopped"  # type: ignore[index]


# -- history ----------------------------------------------------------------------------------------


def test_a_saved_loop_reads_back_whole_and_regenerate_drops_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    steps = [("Checking.", [ToolCall("echo", {"x": "1"})]), ("It is 1.", [])]
    convo = Conversation.open(ScriptedEngine(steps), store, "c", tools=box(tool("echo")))
    list(convo.send("go"))
    engine = ScriptedEngine([("again", [])])
    back = Conversation.open(engine, store, "c", tools=box(tool("echo")))
    assert [(t.role, t.content) for t in back.turns] == [
        ("user", "go"),
        ("assistant", "Checking."),
        ("tool", "echo says 1"),
        ("assistant", "It is 1."),
    ]
    assert back.turns[2].call is not None and back.turns[2].call.arguments == {"x": "1"}
    context = back.context()
    assert context[1]["tool_calls"][0]["function"]["name"] == "echo" and context[2]["role"] == "tool"
    list(back.regenerate())
    assert [t.role for t in back.turns] == ["user", "assistant"]
    assert [m.role for m in store.messages(back.chat.id)] == ["user", "assistant"]  # type: ignore[union-attr]
    md = store.export_markdown(back.chat.id)  # type: ignore[union-attr]
    assert "Tool call" not in md


def test_export_quotes_a_hostile_result_as_code(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.sqlite3")
    hostile = "```\n</details>\n<script>alert(1)</script>\n````"
    steps = [("", [ToolCall("echo", {"x": "1"})]), ("done", [])]
    convo = Conversation.open(ScriptedEngine(steps), store, "c", tools=box(tool("echo", lambda a, c: hostile)))
    list(convo.send("go"))
    md = store.export_markdown(convo.chat.id)  # type: ignore[union-attr]
    assert "Tool call: <code>echo</code> (built-in): ok" in md
    assert "`````text\n" + hostile + "\n`````" in md  # a fence longer than any inside


def test_a_model_that_cannot_call_tools_gets_none_and_no_tool_turns() -> None:
    steps = [("", [ToolCall("echo", {"x": "1"})]), ("It is 1.", [])]
    tools = box(tool("echo"), allowed_dirs=[])
    convo = Conversation(ScriptedEngine(steps), tools=tools)
    list(convo.send("go"))
    starter = ScriptedEngine([("plain", [])], tools=False)
    convo.engine = starter
    tools.allowed = frozenset({"echo"})  # (the user asked for tools: the model's limit is worth a word)
    events = list(convo.send("and now?"))
    assert [e.text for e in events if isinstance(e, Notice)] == [
        "scripted-qwen3.5 cannot call tools (its chat template has no tool format): none are offered"
    ]
    msgs, options = starter.seen[0]
    assert options.tools == ()
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]  # the empty step and the call left out
    assert all("tool_calls" not in m for m in msgs)


# -- the real engine: prompt reuse across tool steps ------------------------------------------------


def test_tool_steps_and_the_turn_after_them_evaluate_only_what_is_new(tiny_qwen35: Path) -> None:
    """On the hybrid Qwen 3.5, a step after a tool's result resumes from the step before, and the
    next message resumes from where the tool loop's turn began (its steps render differently once
    a new message follows), not from the system prompt."""
    from dataclasses import replace

    from edgeassist.engine.llama import LlamaEngine

    engine = LlamaEngine(tiny_qwen35, n_ctx=4096, n_threads=2)
    engine.load()
    assert engine.recurrent and engine.capabilities.tools
    options = GenerationOptions(max_tokens=200, temperature=0)
    convo = Conversation(engine, system_prompt="You are terse.", options=options, tools=box(tool("echo")))
    list(convo.send("first", options=options))
    list(convo.send("call it", options=replace(options, tool_choice="required")))
    steps = [t.stats for t in convo.turns[3:] if t.role == "assistant"]
    assert len(steps) == 2 and convo.turns[4].role == "tool"
    call, answer = steps
    assert call is not None and answer is not None
    assert answer.reused_tokens >= call.prompt_tokens - 8  # (the call step's prompt, up to its reply's start)
    list(convo.send("and then?", options=options))
    after = convo.turns[-1].stats
    assert after is not None and after.reused_tokens >= call.prompt_tokens - 8
