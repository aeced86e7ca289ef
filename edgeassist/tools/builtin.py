"""edgeassist's own tools: the clock, a calculator, reading files under the allowed folders, and a shell.

Each is offered only when its switch in `[tools]` is on. The file tools are confined to
`tools.allowed_dirs`: a path is resolved (links and `..` followed) before it is checked, and then
opened one name at a time from the allowed folder without following links, so a link swapped in
after the check cannot lead out. The shell runs what the user approved, in a session of its own
(no terminal to prompt on), and its whole process group is killed when stopped or over time.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from edgeassist.config import ToolsSettings
from edgeassist.engine.base import ToolSpec
from edgeassist.errors import ToolError
from edgeassist.tools import calc
from edgeassist.tools.base import BUILT_IN, Tool
from edgeassist.units import format_bytes

BUILT_IN_NAMES = ("current_time", "calculate", "read_file", "list_folder", "run_shell")
"""Every built-in tool, whether its switch is on or off."""

MAX_ENTRIES = 500
"""Most entries `list_folder` shows; the rest are counted."""
MAX_COMMAND_CHARS = 10_000
"""Longest command line `run_shell` takes."""
_POLL_S = 0.1  # how often a running command checks the stop event and its time limit


def builtin_tools(settings: ToolsSettings) -> list[Tool]:
    """The built-in tools whose switches are on (the file tools only with an allowed folder)."""
    tools: list[Tool] = []
    if settings.clock:
        tools.append(_clock_tool())
    if settings.calculator:
        tools.append(_calculator_tool())
    if settings.files and settings.allowed_dirs:
        folders = _Folders(settings.allowed_dirs, settings.read_max_bytes)
        tools += [folders.read_tool(), folders.list_tool()]
    if settings.shell and os.name == "posix":  # /bin/sh and process groups
        tools.append(_shell_tool(settings))
    return tools


def _spec(name: str, description: str, properties: dict[str, Any], required: Sequence[str] = ()) -> ToolSpec:
    return ToolSpec(name, description, {"type": "object", "properties": properties, "required": list(required)})


def _shown(text: str) -> str:
    """`text` quoted for a one-line message: control characters escaped, a long one cut short."""
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _text_argument(arguments: Mapping[str, Any], name: str, *, default: str | None = None) -> str:
    value = arguments.get(name)
    if value is None:
        value = default
    if value is None:
        raise ToolError(f"the {name} argument is missing")
    if not isinstance(value, str):
        raise ToolError(f"{name} must be text")
    return value


# --- current_time -------------------------------------------------------------------------------


def _clock_tool() -> Tool:
    spec = _spec(
        "current_time",
        "Get the current date, time and weekday. Give a timezone for the time somewhere else.",
        {
            "timezone": {
                "type": "string",
                "description": "IANA time zone, such as Europe/Paris; leave out for local time",
            }
        },
    )
    return Tool(spec, BUILT_IN, "allow", _current_time)


def _current_time(arguments: Mapping[str, Any], cancel: threading.Event) -> str:
    key = _text_argument(arguments, "timezone", default="").strip()
    if key:
        zone = _zone(key)
        now = datetime.now(zone)
        name: str | None = zone.key
    else:
        now = datetime.now().astimezone()  # the C library's local time, as the rest of the machine sees it
        name = _local_zone_name()
    return describe_time(now, name)


def describe_time(now: datetime, name: str | None = None) -> str:
    """The lines `current_time` answers with: date and weekday, time, time zone and its UTC offset."""
    abbreviation = now.tzname() or ""
    offset = now.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    utc = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    if name and abbreviation and abbreviation != name:
        zone = f"{name} ({abbreviation}, {utc})"
    elif name or abbreviation:
        zone = f"{name or abbreviation} ({utc})"
    else:
        zone = utc
    return f"date: {now:%Y-%m-%d} ({now:%A})\ntime: {now:%H:%M:%S}\ntime zone: {zone}"


def _zone(key: str) -> ZoneInfo:
    """The IANA zone `key` names (its case forgiven), or `ToolError` naming it."""
    if len(key) <= 64:
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            matches = [k for k in available_timezones() if k.casefold() == key.casefold()]
            if len(matches) == 1:
                return ZoneInfo(matches[0])
    raise ToolError(f"unknown time zone {_shown(key)}: use an IANA name such as Europe/Paris or America/New_York")


def _local_zone_name() -> str | None:
    """The IANA name of the local zone, when `TZ` or the `/etc/localtime` link gives one."""
    tz = os.environ.get("TZ")
    if tz is not None:
        candidates = [tz.removeprefix(":")]
    else:
        try:
            target = os.readlink("/etc/localtime")
        except OSError:
            return None
        candidates = [target.split("zoneinfo/", 1)[1]] if "zoneinfo/" in target else []
    for key in candidates:
        try:
            return ZoneInfo(key).key
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue
    return None


# --- calculate ----------------------------------------------------------------------------------


def _calculator_tool() -> Tool:
    spec = _spec(
        "calculate",
        "Calculate an arithmetic expression, such as (17 + 5) * 3 or sqrt(2). Use it for any math.",
        {
            "expression": {
                "type": "string",
                "description": "Arithmetic with + - * / // % ** ( ) and sqrt, sin, cos, tan, log, exp, abs, round,"
                " floor, ceil, pi, e",
            }
        },
        ["expression"],
    )
    return Tool(spec, BUILT_IN, "allow", _calculate)


def _calculate(arguments: Mapping[str, Any], cancel: threading.Event) -> str:
    return calc.format_number(calc.evaluate(_text_argument(arguments, "expression")))


# --- read_file and list_folder ------------------------------------------------------------------

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the check must not block the open; O_NOCTTY: nor a terminal adopt us.
_FILE_FLAGS = os.O_RDONLY | _O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | _O_CLOEXEC
_WALK_BY_FD = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd and _O_NOFOLLOW != 0
_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFLNK: "a link",
}


class _Folders:
    """The allowed folders and the two tools that read under them."""

    def __init__(self, allowed: Sequence[Path], read_max_bytes: int) -> None:
        self.allowed = [Path(d).expanduser().absolute() for d in allowed]
        self.read_max_bytes = read_max_bytes

    def read_tool(self) -> Tool:
        spec = _spec(
            "read_file",
            f"Read a text file and return its contents. Only files under: {self._listed()}.",
            {"path": {"type": "string", "description": f"File path, absolute or relative to {self.allowed[0]}"}},
            ["path"],
        )
        return Tool(spec, BUILT_IN, "ask", self.read_file)

    def list_tool(self) -> Tool:
        spec = _spec(
            "list_folder",
            f"List the files and folders in a folder, with file sizes. Only folders under: {self._listed()}.",
            {
                "path": {
                    "type": "string",
                    "description": f"Folder path, absolute or relative to {self.allowed[0]}; leave out for that folder",
                }
            },
        )
        return Tool(spec, BUILT_IN, "ask", self.list_folder)

    def _listed(self) -> str:
        return ", ".join(str(d) for d in self.allowed)

    def read_file(self, arguments: Mapping[str, Any], cancel: threading.Event) -> str:
        """`read_file`: the whole text of one regular UTF-8 file of at most `read_max_bytes`."""
        given = _text_argument(arguments, "path")
        root, parts = self._locate(given, "read")
        if not parts:
            raise ToolError(f"cannot read {_shown(given)}: it is a folder (use list_folder)")
        data = self._read_bytes(given, root, parts)
        if b"\x00" in data:
            raise ToolError(f"cannot read {_shown(given)}: it is a binary file, not text")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ToolError(f"cannot read {_shown(given)}: it is not UTF-8 text (a binary file?)") from None
        return text or "(the file is empty)"

    def list_folder(self, arguments: Mapping[str, Any], cancel: threading.Event) -> str:
        """`list_folder`: the folder's entries by name, folders with a trailing `/`, files with their size."""
        given = _text_argument(arguments, "path", default="").strip() or str(self.allowed[0])
        root, parts = self._locate(given, "list")
        try:
            fd = _open_folder(root, parts)
        except OSError as e:
            if isinstance(e, NotADirectoryError) and root.joinpath(*parts).is_file():
                raise ToolError(f"cannot list {_shown(given)}: it is a file (use read_file)") from None
            raise _os_error("list", given, e) from None
        try:
            # Names only for every entry; the costly look at each is for the ones shown.
            with os.scandir(fd if _WALK_BY_FD else root.joinpath(*parts)) as it:
                names = sorted((e.name for e in it), key=lambda n: (n.casefold(), n))
            lines = [_entry_line(fd, root.joinpath(*parts), name) for name in names[:MAX_ENTRIES]]
        except OSError as e:
            raise _os_error("list", given, e) from None
        finally:
            os.close(fd)
        if not names:
            return "(the folder is empty)"
        if len(names) > MAX_ENTRIES:
            lines.append(f"… and {len(names) - MAX_ENTRIES} more")
        return "\n".join(lines)

    def _roots(self) -> list[Path]:
        """The allowed folders that exist, as real paths (read each call: a folder may come or go)."""
        roots = []
        for d in self.allowed:
            try:
                real = d.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if real.is_dir():
                roots.append(real)
        return roots

    def _locate(self, given: str, verb: str) -> tuple[Path, tuple[str, ...]]:
        """The allowed folder `given` is under and the names leading from it, or `ToolError` saying why not."""
        if not given.strip() or "\x00" in given or len(given) > 4096:
            raise ToolError(f"cannot {verb} {_shown(given)}: not a usable path")
        try:
            path = Path(given).expanduser()
        except RuntimeError:  # ~name of a user that does not exist
            raise ToolError(f"cannot {verb} {_shown(given)}: no such user") from None
        if not path.is_absolute():
            path = self.allowed[0] / path
        roots = self._roots()
        if not roots:
            raise ToolError(f"cannot {verb} {_shown(given)}: none of the allowed folders exists")
        # First where the path leads as far as it exists, so what lies outside is never looked at
        # further (nothing here says whether something outside exists); then strictly.
        try:
            if not _inside(path.resolve(strict=False), roots):
                raise ToolError(f"cannot {verb} {_shown(given)}: it is outside the allowed folders")
            real = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise ToolError(f"cannot {verb} {_shown(given)}: no such file or folder") from None
        except RuntimeError:  # a link loop (Python < 3.13)
            raise ToolError(f"cannot {verb} {_shown(given)}: it has a loop of links") from None
        except OSError as e:
            raise _os_error(verb, given, e) from None
        root = _inside(real, roots)
        if root is None:
            raise ToolError(f"cannot {verb} {_shown(given)}: it is outside the allowed folders")
        return root, real.relative_to(root).parts

    def _read_bytes(self, given: str, root: Path, parts: tuple[str, ...]) -> bytes:
        cap = self.read_max_bytes
        try:
            folder, name = _open_parent(root, parts)
            try:
                # Look before opening: opening a FIFO would block, a device could do anything.
                _check_file(given, os.stat(name, dir_fd=folder, follow_symlinks=False), cap)
                fd = os.open(name, _FILE_FLAGS, dir_fd=folder)
            finally:
                if folder is not None:
                    os.close(folder)
        except OSError as e:
            raise _os_error("read", given, e) from None
        try:
            _check_file(given, os.fstat(fd), cap)  # what was opened, in case it changed since the look
            chunks = []
            left = cap + 1  # one byte more than allowed tells a file that grew since
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as e:
            raise _os_error("read", given, e) from None
        finally:
            os.close(fd)
        data = b"".join(chunks)
        if len(data) > cap:
            raise ToolError(f"cannot read {_shown(given)}: it is over the {cap:,}-byte limit (tools.read_max_bytes)")
        return data


def _inside(path: Path, roots: Sequence[Path]) -> Path | None:
    """The first of `roots` that `path` is in (or is), else None."""
    return next((r for r in roots if path.is_relative_to(r)), None)


def _check_file(given: str, st: os.stat_result, cap: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ToolError(f"cannot read {_shown(given)}: it is a folder (use list_folder)")
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise ToolError(f"cannot read {_shown(given)}: it is {kind}, not a regular file")
    if st.st_size > cap:
        raise ToolError(
            f"cannot read {_shown(given)}: it is {st.st_size:,} bytes, over the {cap:,}-byte limit"
            " (tools.read_max_bytes)"
        )


def _os_error(verb: str, given: str, e: OSError) -> ToolError:
    if e.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.EXDEV):
        # Resolved a moment ago, so a link or a missing name now means it was changed meanwhile.
        reason = "it changed while being opened (a link or a missing name on the way)"
    elif e.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    else:
        reason = e.strerror or type(e).__name__
    return ToolError(f"cannot {verb} {_shown(given)}: {reason}")


def _walk(root: Path, names: Sequence[str]) -> int:
    """A descriptor of the folder `root/names...`, opened one name at a time, never through a link."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in names:
            step = os.open(name, _DIR_FLAGS | _O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_parent(root: Path, parts: tuple[str, ...]) -> tuple[int | None, str]:
    """The folder holding the last of `parts` (a descriptor) and its name; or, without `dir_fd`, None and the path."""
    if _WALK_BY_FD:
        return _walk(root, parts[:-1]), parts[-1]
    return None, str(root.joinpath(*parts))


def _open_folder(root: Path, parts: tuple[str, ...]) -> int:
    if _WALK_BY_FD:
        return _walk(root, parts)
    return os.open(root.joinpath(*parts), _DIR_FLAGS)


def _entry_line(folder_fd: int, folder: Path, name: str) -> str:
    shown = _printable(name)
    try:
        if _WALK_BY_FD:
            st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        else:
            st = os.lstat(folder / name)
    except OSError:
        return f"{shown} (gone)"
    if stat.S_ISDIR(st.st_mode):
        return f"{shown}/"
    if stat.S_ISREG(st.st_mode):
        return f"{shown}  {format_bytes(st.st_size)}"
    return f"{shown} ({_KINDS.get(stat.S_IFMT(st.st_mode), 'special file')})"


def _printable(name: str) -> str:
    """A file name as one line of text: undecodable bytes and control characters escaped, so no name forges a line."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return text if text.isprintable() else ascii(text)[1:-1]


# --- run_shell ----------------------------------------------------------------------------------


def _shell_tool(settings: ToolsSettings) -> Tool:
    folder = Path(settings.allowed_dirs[0]).expanduser().absolute() if settings.allowed_dirs else Path.home()
    spec = _spec(
        "run_shell",
        "Run a shell command on the user's computer and return its output and exit code. The user approves each one.",
        {"command": {"type": "string", "description": f"The command line, run by /bin/sh in {folder}"}},
        ["command"],
    )
    return Tool(spec, BUILT_IN, "ask", _Shell(folder, settings.timeout_s, settings.result_chars).run)


class _Shell:
    """Runs approved command lines: output captured and capped, the process group killed when stopped or over time."""

    def __init__(self, folder: Path, timeout_s: float, result_chars: int) -> None:
        self.folder = folder
        self.timeout_s = timeout_s
        self.result_chars = result_chars

    def run(self, arguments: Mapping[str, Any], cancel: threading.Event) -> str:
        """`run_shell`: the exit code and the first `result_chars` characters of stdout and stderr together."""
        command = _text_argument(arguments, "command")
        if not command.strip():
            raise ToolError("the command is empty")
        if "\x00" in command or len(command) > MAX_COMMAND_CHARS:
            raise ToolError(f"the command must be text of at most {MAX_COMMAND_CHARS:,} characters")
        if not self.folder.is_dir():
            raise ToolError(f"cannot run in {self.folder}: the folder does not exist")
        if cancel.is_set():
            raise ToolError("stopped before it ran")
        try:
            # The user's consented command line is the only thing ever handed to the shell. A new
            # session is a new process group to kill as one, with no terminal to prompt on.
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise ToolError(f"cannot start /bin/sh: {e.strerror or e}") from None
        assert proc.stdout is not None
        try:
            with proc.stdout:
                output, total = self._collect(proc, proc.stdout.fileno(), cancel)
        except BaseException:
            if proc.returncode is None:  # not reaped, so its group id is still its own
                _kill_group(proc)
            raise
        return self._result(proc.returncode, output, total)

    def _collect(self, proc: subprocess.Popen[bytes], fd: int, cancel: threading.Event) -> tuple[bytes, int]:
        """Read the output until the shell exits; kill its process group when stopped or over time."""
        keep = self.result_chars * 4  # enough bytes for `result_chars` characters of UTF-8
        kept = bytearray()
        total = 0

        def take(limit: int) -> bool:
            nonlocal total
            for _ in range(limit):
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    return True
                if not chunk:
                    return False
                total += len(chunk)
                kept.extend(chunk[: max(0, keep - len(kept))])  # the rest is counted and dropped
            return True

        os.set_blocking(fd, False)
        deadline = time.monotonic() + self.timeout_s
        open_ = True
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                if open_ and selector.select(_POLL_S):
                    open_ = take(16)
                    if not open_:
                        selector.unregister(fd)
                elif not open_:
                    try:
                        proc.wait(_POLL_S)
                    except subprocess.TimeoutExpired:
                        pass  # (still running: look at the stop and the deadline again)
                if proc.poll() is not None:
                    # What it wrote before exiting is in the pipe; a background job it left may
                    # write on, so drain a bounded amount.
                    if open_:
                        take(16)
                    return bytes(kept), total
                # The shell is not yet reaped here, so its process group id is still its own.
                if cancel.is_set():
                    _kill_group(proc)
                    raise ToolError("stopped: the command was killed")
                if time.monotonic() > deadline:
                    _kill_group(proc)
                    raise ToolError(f"the command ran over {self.timeout_s:g} s and was killed (tools.timeout_s)")

    def _result(self, code: int, output: bytes, total: int) -> str:
        status = f"exit code: {code}" if code >= 0 else f"killed by signal {_signal_name(-code)}"
        text = output.decode("utf-8", errors="replace")
        if not text:
            return f"{status}\n(no output)"
        if len(text) > self.result_chars or total > len(output):
            text = f"{text[: self.result_chars]}\n… (output cut: {total:,} bytes in all)"
        return f"{status}\noutput:\n{text}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the command's whole process group, then reap the shell."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # (the group has ended already)
    proc.wait()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
