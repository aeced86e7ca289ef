"""Tools from MCP servers: each configured server started once, its tools offered as `SERVER.TOOL`.

The rest of the app is threads; the official MCP SDK is asyncio. `McpServers` owns one event loop
on a daemon thread: every server's session lives there, and each tool call crosses over with
`run_coroutine_threadsafe` and is waited for on the caller's thread, which also watches the stop
event and the server's time limit.

A stdio server is started by edgeassist's own small transport rather than the SDK's
`stdio_client`, for two reasons: the SDK always adds its own inherited variables (USER, SHELL,
TERM, ...) to the environment, while a server here gets only PATH, HOME, the locale and TMPDIR
plus its configured `env`; and the server's stderr must never reach the terminal (it would
corrupt the TUI), so it is read here into the log and a short tail for error messages. The
shutdown follows the MCP spec (close stdin, wait, terminate the process group, kill), as the
SDK's does.

Nothing a server sends is interpreted: descriptions are made single-spaced plain text, results
come back as the text they are.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import enum
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgeassist.config import McpServerSettings
from edgeassist.engine.base import ToolSpec
from edgeassist.errors import ToolError
from edgeassist.tools.base import Tool

if TYPE_CHECKING:
    import anyio
    import mcp.types as mt
    from anyio.abc import Process
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
    from mcp.client import Transport
    from mcp.client.session import ClientSession
    from mcp.shared.message import SessionMessage

    Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]

if sys.version_info >= (3, 11):
    import builtins

    _ExceptionGroup = builtins.BaseExceptionGroup
else:  # pragma: no cover - anyio brings the backport on 3.10
    from exceptiongroup import BaseExceptionGroup as _ExceptionGroup

log = logging.getLogger("edgeassist.mcp")

NOT_INSTALLED = "MCP servers are configured but the `mcp` package is not installed: pip install 'edgeassist[mcp]'"
"""The one line `start()` gives when servers are configured and the SDK is missing."""

_NO_SDK = "the `mcp` package is not installed"

INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR") + (
    ("SYSTEMROOT",) if sys.platform == "win32" else ()
)
"""The only variables a stdio server gets from edgeassist's environment (its own `env` comes on top)."""

DESCRIPTION_CHARS = 1024
"""Longest tool description offered to the model (a server's can be pages long)."""

_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Tool names the model is offered (the MCP spec's advice); a server's other tools are left out."""
_MAX_PAGES = 20
"""Most `tools/list` pages read from one server (a cursor that never ends cannot hang the start)."""
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Longest JSON-RPC line a stdio server may send."""
_STDERR_LINES = 20
"""Lines of a server's stderr kept for error messages (all of it goes to the log)."""
_STDERR_LINE_CHARS = 300
"""Longest stderr line kept or logged."""
_STDIN_GRACE_S = 1.0
"""How long a server has to exit after its stdin closes, before it is terminated."""
_TERM_GRACE_S = 1.0
"""How long after SIGTERM before SIGKILL."""
_REAP_S = 2.0
"""How long to wait for a killed server to be seen gone."""
_EXIT_STATUS_S = 1.0
"""How long to wait, after a server closes its stdout, for its exit status (for the error message)."""
_STDERR_DRAIN_S = 0.5
"""How long to wait, once a server has exited, for the rest of its stderr."""
_CLOSE_GRACE_S = 5.0
"""How long a running session may take to end cleanly on `close()` before it is cut."""
_CLOSE_WAIT_S = 15.0
"""Backstop for `close()` as a whole (every server's shutdown is bounded well below it)."""
_POLL_S = 0.05
"""How often a waiting tool call looks at its stop event."""


class State(enum.Enum):
    """Where one server is; `_Server._move` is the only place that changes it."""

    DISABLED = "disabled"
    """`enabled = false` in its settings: never started."""
    IDLE = "not started"
    """Enabled, `start()` not called yet."""
    STARTING = "starting"
    """Started; initializing and listing its tools."""
    RUNNING = "running"
    """Its tools are offered and answer."""
    FAILED = "failed"
    """It did not start (the reason is kept)."""
    STOPPED = "stopped"
    """It ran and then ended: exited, crashed, or `close()`."""


_MOVES = {
    State.IDLE: {State.STARTING, State.FAILED},
    State.STARTING: {State.RUNNING, State.FAILED},
    State.RUNNING: {State.STOPPED},
}


class _StartFailed(Exception):
    """A server could not be started; the message is the reason, for `did not start: …`."""


@dataclass(eq=False)
class _Server:
    """One configured server and everything its session needs; loop-side fields are touched only on the loop."""

    name: str
    settings: McpServerSettings
    state: State
    why: str = ""
    """The reason behind FAILED and STOPPED; the tool count behind RUNNING."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: concurrent.futures.Future[list[Tool]] = field(default_factory=concurrent.futures.Future)
    """The tools once it answers, or `_StartFailed`; `start()` cancels it when it gives up waiting."""
    lifetime: concurrent.futures.Future[None] | None = None
    """The session's whole life on the loop."""
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_LINES))
    """The last lines of its stderr."""
    exit_reason: str | None = None
    """How the process ended, when it ended on its own (not by `close()`)."""
    # Loop-side only:
    session: ClientSession | None = None
    scope: anyio.CancelScope | None = None
    stop: anyio.Event | None = None

    def _move(self, to: State, why: str) -> bool:
        """Change state when the move is allowed (the caller holds `lock`); False when it is not."""
        if to not in _MOVES.get(self.state, set()):
            return False
        log.info("MCP server %s: %s -> %s (%s)", self.name, self.state.value, to.value, why)
        self.state, self.why = to, why
        return True

    def begin(self) -> None:
        """`start()` launches it."""
        with self.lock:
            self._move(State.STARTING, "")

    def answered(self, tools: list[Tool]) -> bool:
        """It initialized and listed its tools; False when `start()` has already given up on it."""
        with self.lock:
            if self.ready.cancelled() or not self._move(State.RUNNING, _count(len(tools))):
                return False
            self.ready.set_result(tools)
            return True

    def gave_up(self, why: str) -> bool:
        """`start()` stops waiting for it; False when it answered (or failed) just now."""
        with self.lock:
            if not self.ready.cancel():
                return False
            self._move(State.FAILED, why)
            return True

    def ended(self, why: str) -> None:
        """It failed to start, or its session ended; the first reason given is kept."""
        with self.lock:
            if self.state is State.RUNNING:
                self._move(State.STOPPED, why)
            elif self._move(State.FAILED, why) and not self.ready.done():
                self.ready.set_exception(_StartFailed(why))

    def status(self) -> str:
        """One line for people."""
        with self.lock:
            state, why = self.state, self.why
        return f"{state.value} ({why})" if state is State.RUNNING else f"{state.value}: {why}" if why else state.value

    def last_stderr(self) -> str:
        """The last line it wrote to stderr, or ''."""
        return self.stderr[-1] if self.stderr else ""


class McpServers:
    """The configured MCP servers, behind a thread-safe, blocking interface.

    `start()` once, offer the tools it returns, `close()` at the end. Tools stay callable from
    any thread in between; a server that is gone answers each call with a `ToolError`.
    """

    def __init__(self, servers: Mapping[str, McpServerSettings], *, notify: Callable[[str], None]) -> None:
        """`servers` by name, as in `[tools.mcp.NAME]`; `notify` gets one line per server that does not start."""
        self._notify = notify
        self._servers = [
            _Server(name, settings, State.IDLE if settings.enabled else State.DISABLED)
            for name, settings in servers.items()
        ]
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._tools: list[Tool] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._quit: asyncio.Event | None = None
        self._closing = False  # read on the loop: a session ending now was ended by close()

    # -- the blocking interface --------------------------------------------------------------------

    def start(self) -> list[Tool]:
        """Start every enabled server at once and return their tools; never raises for one bad server.

        Blocks until each has listed its tools or run out of its `timeout_s`. A server that fails
        gives one line through `notify`; the others go on. A second call returns the same tools.
        """
        with self._lock:
            if self._started or self._closed:
                return list(self._tools)
            self._started = True
            enabled = [srv for srv in self._servers if srv.state is State.IDLE]
            if not enabled:
                return []
            problem = _import_sdk()
            if not problem:
                loop = self._launch()
                began = time.monotonic()
                for srv in enabled:
                    srv.begin()
                    srv.lifetime = asyncio.run_coroutine_threadsafe(self._serve(srv), loop)
        if problem:
            for srv in enabled:
                srv.ended(problem)
            self._notify(NOT_INSTALLED if problem == _NO_SDK else f"MCP servers are configured but {problem}")
            return []

        tools: list[Tool] = []
        for srv in enabled:
            timeout = srv.settings.timeout_s
            try:
                tools += srv.ready.result(timeout=max(0.0, began + timeout - time.monotonic()))
            except concurrent.futures.TimeoutError:
                if srv.gave_up(f"did not answer in {timeout:g} s"):
                    self._notify(f"MCP server `{srv.name}` did not answer in {timeout:g} s")
                    loop.call_soon_threadsafe(self._abandon, srv)
                elif not srv.ready.exception():
                    tools += srv.ready.result()
                else:
                    self._notify(f"MCP server `{srv.name}` did not start: {srv.ready.exception()}")
            except _StartFailed as exc:
                self._notify(f"MCP server `{srv.name}` did not start: {exc}")
        with self._lock:
            self._tools = tools
        return list(tools)

    def status(self) -> dict[str, str]:
        """Each server's state in one line: `running (2 tools)`, `failed: …`, `stopped: …`, `disabled`."""
        return {srv.name: srv.status() for srv in self._servers}

    def close(self) -> None:
        """End every session and server process and stop the loop thread; safe to call twice, or before `start()`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=_CLOSE_WAIT_S)
        except (concurrent.futures.TimeoutError, RuntimeError):
            log.warning("MCP servers did not all stop in %g s", _CLOSE_WAIT_S)
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(self._end_loop)
        thread.join(timeout=_CLOSE_WAIT_S)
        if thread.is_alive():
            log.warning("the MCP loop thread did not end")

    # -- the loop thread ---------------------------------------------------------------------------

    def _launch(self) -> asyncio.AbstractEventLoop:
        """Start the loop thread (under `_lock`) and return its loop once it runs."""
        running = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._quit = asyncio.Event()
            running.set()
            await self._quit.wait()

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException:  # pragma: no cover - nothing in main() raises
                log.exception("the MCP loop thread failed")
            finally:
                running.set()

        self._thread = threading.Thread(target=run, name="edgeassist-mcp", daemon=True)
        self._thread.start()
        running.wait()
        if self._loop is None:  # pragma: no cover
            raise RuntimeError("the MCP event loop did not start")
        return self._loop

    def _end_loop(self) -> None:
        if self._quit is not None:
            self._quit.set()

    def _abandon(self, srv: _Server) -> None:
        """`start()` gave up on a server that is still starting: cut it off (on the loop)."""
        if srv.scope is not None:
            srv.scope.cancel()

    async def _shutdown(self) -> None:
        """End every session: running ones cleanly (bounded), starting ones at once; wait for all."""
        import anyio

        self._closing = True
        for srv in self._servers:
            if srv.scope is None:
                continue
            if srv.session is not None and srv.stop is not None:
                srv.stop.set()
                srv.scope.deadline = min(srv.scope.deadline, anyio.current_time() + _CLOSE_GRACE_S)
            else:
                srv.scope.cancel()
        lifetimes = [asyncio.wrap_future(srv.lifetime) for srv in self._servers if srv.lifetime is not None]
        if lifetimes:
            await asyncio.wait(lifetimes, timeout=_CLOSE_WAIT_S - 1)

    async def _serve(self, srv: _Server) -> None:
        """One server's whole session: connect, initialize, list tools, then wait for the end."""
        import anyio
        from mcp.client.session import ClientSession
        from mcp.types import Implementation

        from edgeassist import __version__

        srv.stop = anyio.Event()
        try:
            with anyio.CancelScope() as scope:
                srv.scope = scope
                if self._closing:
                    return
                async with contextlib.AsyncExitStack() as stack:
                    read, write = await stack.enter_async_context(self._connect(srv))
                    session = await stack.enter_async_context(
                        ClientSession(read, write, client_info=Implementation(name="edgeassist", version=__version__))
                    )
                    await session.initialize()
                    tools = self._offer(srv, await _list_tools(session))
                    srv.session = session
                    if srv.answered(tools):
                        await srv.stop.wait()
        except Exception as exc:
            srv.ended(srv.exit_reason or _describe(exc))
        finally:
            srv.session = None
            srv.ended(srv.exit_reason or "closed")

    def _connect(self, srv: _Server) -> Transport:
        """The transport its settings name: a program over stdio, or streamable HTTP."""
        settings = srv.settings
        if settings.command and settings.url:
            raise _StartFailed("has both `command` and `url`: keep one")
        if settings.command:
            return _stdio(srv)
        if settings.url:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(settings.url)
        raise _StartFailed("has neither `command` nor `url`")

    def _offer(self, srv: _Server, listed: list[mt.Tool]) -> list[Tool]:
        """The server's tools as the model is offered them; odd names and repeats are left out."""
        tools: list[Tool] = []
        seen: set[str] = set()
        for entry in listed:
            if not _TOOL_NAME.fullmatch(entry.name) or entry.name in seen:
                log.warning("MCP server %s: tool %r left out (name not usable or repeated)", srv.name, entry.name[:80])
                continue
            seen.add(entry.name)
            spec = ToolSpec(
                name=f"{srv.name}.{entry.name}",
                description=plain_line(entry.description or entry.title or "", DESCRIPTION_CHARS),
                parameters=_parameters(entry.input_schema),
            )
            run = functools.partial(self._call, srv, entry.name, spec.name)
            tools.append(Tool(spec=spec, source=srv.name, default_policy="ask", run=run))
        return tools

    # -- one call ----------------------------------------------------------------------------------

    def _call(self, srv: _Server, tool: str, shown: str, arguments: Mapping[str, Any], cancel: threading.Event) -> str:
        """Run one tool call (any thread): its text, or `ToolError`."""
        if cancel.is_set():
            raise ToolError("stopped")
        loop = self._loop
        if srv.state is not State.RUNNING or loop is None or self._closed:
            raise ToolError(f"MCP server `{srv.name}` is not running ({srv.status()})")
        try:
            future = asyncio.run_coroutine_threadsafe(self._call_async(srv, tool, dict(arguments)), loop)
        except RuntimeError:  # the loop has ended
            raise ToolError(f"MCP server `{srv.name}` is not running ({srv.status()})") from None
        timeout = srv.settings.timeout_s
        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(timeout=max(0.0, min(_POLL_S, deadline - time.monotonic())))
            except concurrent.futures.TimeoutError:
                pass  # (not yet: look at the stop and the deadline again)
            except concurrent.futures.CancelledError:
                raise ToolError(f"MCP server `{srv.name}` stopped: closed") from None
            if cancel.is_set():
                future.cancel()
                raise ToolError("stopped")
            if time.monotonic() >= deadline:
                future.cancel()
                raise ToolError(f"`{shown}` did not answer in {timeout:g} s")

    async def _call_async(self, srv: _Server, tool: str, arguments: dict[str, Any]) -> str:
        """The call itself, on the loop."""
        from mcp.shared.exceptions import MCPError
        from mcp.types import CONNECTION_CLOSED

        session = srv.session
        if session is None:
            raise ToolError(f"MCP server `{srv.name}` is not running ({srv.status()})")
        try:
            result = await session.call_tool(tool, arguments)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                why = srv.exit_reason or ("closed" if self._closing else "the connection closed")
                raise ToolError(f"MCP server `{srv.name}` stopped: {why}") from None
            raise ToolError(plain_line(exc.message) or f"MCP error {exc.code}") from None
        except Exception as exc:
            raise ToolError(f"MCP server `{srv.name}` failed: {_describe(exc)}") from None
        text = result_text(result)
        if result.is_error:
            raise ToolError(plain_line(text, 2000) or f"`{srv.name}.{tool}` failed")
        return text


def _import_sdk() -> str:
    """Import the SDK now, outside any server's time limit; what is wrong with it, or ''."""
    if importlib.util.find_spec("mcp") is None:
        return _NO_SDK
    try:
        import anyio.lowlevel  # noqa: F401
        import mcp.client.session  # noqa: F401
        import mcp.client.streamable_http  # noqa: F401
        import mcp.os.posix.utilities  # noqa: F401
        import mcp.types  # noqa: F401
    except Exception as exc:  # a broken or incompatible install
        return f"the `mcp` package cannot be loaded: {type(exc).__name__}: {plain_line(str(exc))}"
    return ""


# -- the stdio transport ---------------------------------------------------------------------------


def server_env(own: Mapping[str, str]) -> dict[str, str]:
    """A stdio server's whole environment: `INHERITED_ENV` from ours, then its own entries."""
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.update(own)
    return env


def _program(command: str, env: Mapping[str, str]) -> str:
    """The program to run, looked up on the server's PATH; `_StartFailed` when there is none."""
    found = shutil.which(command, path=env.get("PATH", os.defpath))
    if found is not None:
        return found
    if os.path.dirname(command) and os.path.exists(command):
        raise _StartFailed(f"cannot run {command}: not an executable file")
    raise _StartFailed(f"command not found: {command}")


@contextlib.asynccontextmanager
async def _stdio(srv: _Server) -> AsyncIterator[Streams]:
    """Start the server's program and talk newline-delimited JSON-RPC over its stdin and stdout."""
    import anyio
    import anyio.lowlevel
    import mcp.types as mt
    from mcp.shared.message import SessionMessage

    settings = srv.settings
    assert settings.command is not None
    env = server_env(settings.env)
    program = _program(settings.command, env)
    try:
        process = await anyio.open_process(
            [program, *settings.args],
            env=env,
            start_new_session=sys.platform != "win32",  # its own process group, to end it with its children
        )
    except PermissionError:
        raise _StartFailed(f"cannot run {settings.command}: permission denied") from None
    except OSError as exc:
        raise _StartFailed(f"cannot run {settings.command}: {exc.strerror or exc}") from None
    log.info("MCP server %s: started %s (pid %d)", srv.name, program, process.pid)

    # No awaits between the spawn and the task group, or a cancellation there would leak the process.
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    shutting_down = False
    stderr_read = anyio.Event()  # its stderr reached its end: the last lines are in `srv.stderr`

    async def read_stdout() -> None:
        assert process.stdout is not None
        buffer = bytearray()
        by_server = False  # its stdout ended (not our side closing the streams)
        try:
            async for chunk in process.stdout:
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line = bytes(buffer[:end]).strip()
                    del buffer[: end + 1]
                    if not line:
                        continue
                    try:
                        message = mt.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    except ValueError:
                        log.warning("MCP server %s: not JSON-RPC on stdout: %s", srv.name, _clip(line))
                        continue
                    await read_writer.send(SessionMessage(message))
                if len(buffer) > _MAX_MESSAGE_BYTES:
                    srv.exit_reason = f"sent a message over {_MAX_MESSAGE_BYTES // 2**20} MiB"
                    break
            by_server = True
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the session closed its end
        except OSError:
            by_server = True
        finally:
            if by_server and not shutting_down:
                # It closed its stdout: it exited, or is about to. Say how before anyone waiting hears of it.
                with anyio.CancelScope(shield=True):
                    if await _exited(process, _EXIT_STATUS_S):
                        with anyio.move_on_after(_STDERR_DRAIN_S):
                            await stderr_read.wait()
                if srv.exit_reason is None:
                    srv.exit_reason = _how_it_ended(process.returncode, srv.last_stderr())
                srv.ended(srv.exit_reason)
                if srv.stop is not None:
                    srv.stop.set()
            read_writer.close()

    async def write_stdin() -> None:
        assert process.stdin is not None
        try:
            async for message in write_reader:
                data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                await process.stdin.send(data.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            read_writer.close()  # it stopped reading: anyone waiting hears so rather than hanging

    async def read_stderr() -> None:
        assert process.stderr is not None
        buffer = bytearray()

        def keep(raw: bytes) -> None:
            text = raw.decode("utf-8", "replace").rstrip()
            if text.strip():
                text = _clip(text)
                log.info("MCP server %s: %s", srv.name, text)
                srv.stderr.append(text)

        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
            async for chunk in process.stderr:
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    keep(bytes(buffer[:end]))
                    del buffer[: end + 1]
                if len(buffer) > 4 * _STDERR_LINE_CHARS:
                    keep(bytes(buffer))
                    buffer.clear()
        keep(bytes(buffer))
        stderr_read.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_stdout)
        tasks.start_soon(write_stdin)
        tasks.start_soon(read_stderr)
        try:
            yield read_stream, write_stream
        finally:
            shutting_down = True
            # Shielded and bounded: a cancelled caller must not leave the process behind.
            with anyio.CancelScope(shield=True):
                for stream in (read_stream, write_stream, read_writer, write_reader):
                    stream.close()
                await _stop_process(process)
                with anyio.move_on_after(_STDERR_DRAIN_S):
                    await stderr_read.wait()
                await _close_output(process)
                await anyio.lowlevel.checkpoint()  # let the pipe tasks see their streams closed
            tasks.cancel_scope.cancel()


async def _stop_process(process: Process) -> None:
    """Close its stdin, wait, terminate its process group, kill it."""
    import anyio

    with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        if process.stdin is not None:
            await process.stdin.aclose()
    exited = await _exited(process, _STDIN_GRACE_S)
    if sys.platform == "win32":  # pragma: no cover - TerminateProcess is already a hard kill
        if not exited:
            with contextlib.suppress(OSError):
                process.kill()
    else:
        from mcp.os.posix.utilities import terminate_posix_process_tree

        # Also when it exited by itself: children it left in its group go too.
        await terminate_posix_process_tree(process, _TERM_GRACE_S)
    if not await _exited(process, _REAP_S):
        log.warning("MCP server process %d is still there after SIGKILL", process.pid)


async def _close_output(process: Process) -> None:
    """Let go of its stdout and stderr (a child it left behind may still hold them open)."""
    import anyio

    for stream in (process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                await stream.aclose()


async def _exited(process: Process, within: float) -> bool:
    """Whether it has exited (and been reaped) within `within` seconds.

    Polls `returncode`: `wait()` would also wait for the pipes to close, which a child holding
    them open would stretch.
    """
    import anyio

    deadline = anyio.current_time() + within
    while process.returncode is None:
        if anyio.current_time() >= deadline:
            return False
        await anyio.sleep(0.01)
    return True


def _how_it_ended(returncode: int | None, last_stderr: str) -> str:
    """`exited with code 3: <its last stderr line>`, or killed by a signal, or still there."""
    if returncode is None:
        how = "closed its output"
    elif returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode}"
    return f"{how}: {last_stderr}" if last_stderr else how


# -- what goes to and comes from the model ---------------------------------------------------------


async def _list_tools(session: ClientSession) -> list[mt.Tool]:
    """Every tool the server lists, page by page."""
    from mcp.types import PaginatedRequestParams

    listed: list[mt.Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        listed += page.tools
        cursor = page.next_cursor
        if not cursor:
            break
    return listed


def _parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A tool's input schema as a JSON-clean object schema (what `ToolSpec` promises)."""
    try:
        clean = json.loads(json.dumps(dict(schema)))
    except (TypeError, ValueError):
        clean = {}
    if not isinstance(clean, dict) or clean.get("type", "object") != "object":
        return {"type": "object", "properties": {}}
    clean["type"] = "object"
    if not isinstance(clean.get("properties"), dict):
        clean["properties"] = {}
    return clean


def result_text(result: mt.CallToolResult) -> str:
    """A call's result as text: text items as they are, anything else a placeholder like `[image/png, 1234 bytes]`."""
    import mcp.types as mt

    parts: list[str] = []
    for item in result.content:
        if isinstance(item, mt.TextContent):
            parts.append(item.text)
        elif isinstance(item, mt.ImageContent | mt.AudioContent):
            parts.append(f"[{plain_line(item.mime_type, 100)}, {_decoded_size(item.data)} bytes]")
        elif isinstance(item, mt.EmbeddedResource):
            resource = item.resource
            if isinstance(resource, mt.TextResourceContents):
                parts.append(resource.text)
            else:
                kind = plain_line(resource.mime_type or "resource", 100)
                parts.append(f"[{kind} {plain_line(str(resource.uri), 200)}, {_decoded_size(resource.blob)} bytes]")
        elif isinstance(item, mt.ResourceLink):
            parts.append(f"[resource link {plain_line(str(item.uri), 200)}]")
        else:  # pragma: no cover - every content type of the protocol is handled above
            parts.append("[content of an unknown type]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def plain_line(text: str, limit: int = 300) -> str:
    """Text from outside as one plain, single-spaced line of at most `limit` characters.

    Control and format characters (newlines, escapes, bidi overrides) become spaces.
    """
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _clip(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return plain_line(text, _STDERR_LINE_CHARS)


def _decoded_size(data: str) -> int:
    """Bytes a base64 text holds."""
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data) * 3 // 4


def _count(n: int) -> str:
    return f"{n} tool" if n == 1 else f"{n} tools"


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong, from the innermost exception of a group."""
    from mcp.shared.exceptions import MCPError

    while isinstance(exc, _ExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, _StartFailed):
        return str(exc)
    if isinstance(exc, MCPError):
        return plain_line(exc.message) or f"MCP error {exc.code}"
    text = plain_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
