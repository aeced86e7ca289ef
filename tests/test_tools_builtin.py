"""The built-in tools on the real clock, file system and /bin/sh: switches, confinement, bounds, stopping."""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pilot import eventually
from unprivileged import said_as_nobody

from edgeassist.config import ToolsSettings
from edgeassist.errors import ToolError
from edgeassist.tools import builtin, calc
from edgeassist.tools.base import BUILT_IN, Tool
from edgeassist.tools.builtin import BUILT_IN_NAMES, MAX_ENTRIES, builtin_tools, describe_time

posix_only = pytest.mark.skipif(os.name != "posix", reason="links, FIFOs, /bin/sh and process groups")


def tools_of(**kwargs: Any) -> dict[str, Tool]:
    return {t.name: t for t in builtin_tools(ToolsSettings(**kwargs))}


def call(tool: Tool, cancel: threading.Event | None = None, **arguments: Any) -> str:
    return tool.run(arguments, cancel or threading.Event())


def refusal(tool: Tool, **arguments: Any) -> str:
    with pytest.raises(ToolError) as info:
        call(tool, **arguments)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the set of tools ---------------------------------------------------------------------------


def test_defaults_offer_clock_and_calculator_only(tmp_path: Path) -> None:
    # files is on by default, but with no allowed folder there is nothing to read; the shell is off
    assert list(tools_of()) == ["current_time", "calculate"]


def test_every_switch(tmp_path: Path) -> None:
    everything = tools_of(allowed_dirs=[tmp_path], shell=True)
    assert tuple(everything) == BUILT_IN_NAMES
    assert "current_time" not in tools_of(clock=False)
    assert "calculate" not in tools_of(calculator=False)
    assert set(tools_of(files=False, allowed_dirs=[tmp_path])) == {"current_time", "calculate"}
    assert set(tools_of(files=True, allowed_dirs=[])) == {"current_time", "calculate"}
    assert "run_shell" in tools_of(shell=True)
    assert tools_of(clock=False, calculator=False, files=False, shell=False) == {}


def test_specs_policies_and_schemas(tmp_path: Path) -> None:
    everything = tools_of(allowed_dirs=[tmp_path], shell=True)
    policies = {name: t.default_policy for name, t in everything.items()}
    assert policies == {
        "current_time": "allow",
        "calculate": "allow",
        "read_file": "ask",
        "list_folder": "ask",
        "run_shell": "ask",
    }
    for tool in everything.values():
        assert tool.source == BUILT_IN
        schema = tool.spec.parameters
        assert schema["type"] == "object"
        assert set(schema["required"]) <= set(schema["properties"])
        assert all(p["type"] == "string" and p["description"] for p in schema["properties"].values())
        assert 0 < len(tool.spec.description) <= 160
        assert tool.spec.for_template()["function"]["name"] == tool.name
    assert everything["calculate"].spec.parameters["required"] == ["expression"]
    assert everything["read_file"].spec.parameters["required"] == ["path"]
    assert everything["run_shell"].spec.parameters["required"] == ["command"]
    assert str(tmp_path) in everything["read_file"].spec.description  # the model learns where it may look


# --- current_time -------------------------------------------------------------------------------


def test_describe_time_is_short_plain_lines() -> None:
    moment = datetime(2024, 2, 29, 13, 5, 9, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert describe_time(moment, "Asia/Kolkata") == (
        "date: 2024-02-29 (Thursday)\ntime: 13:05:09\ntime zone: Asia/Kolkata (IST, UTC+05:30)"
    )
    moment = datetime(2024, 1, 1, 0, 0, 0, tzinfo=ZoneInfo("America/St_Johns"))
    assert describe_time(moment, "America/St_Johns").endswith("America/St_Johns (NST, UTC-03:30)")
    assert describe_time(datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC")), "UTC").endswith("time zone: UTC (UTC+00:00)")


def test_current_time_in_a_zone() -> None:
    tool = tools_of()["current_time"]
    before = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    text = call(tool, timezone="Asia/Tokyo")
    after = datetime.now(ZoneInfo("Asia/Tokyo")).date()
    date = re.search(r"^date: (\d{4}-\d\d-\d\d) \((\w+)\)$", text, re.M)
    assert date is not None
    assert date[1] in (before.isoformat(), after.isoformat())
    assert date[2] == datetime.fromisoformat(date[1]).strftime("%A")
    assert re.search(r"^time: \d\d:\d\d:\d\d$", text, re.M)
    assert text.endswith("time zone: Asia/Tokyo (JST, UTC+09:00)")
    # a small model's lower case is forgiven
    assert call(tool, timezone="asia/tokyo").endswith("Asia/Tokyo (JST, UTC+09:00)")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "Europe", "x" * 300])
def test_unknown_zone_is_named(zone: str) -> None:
    message = refusal(tools_of()["current_time"], timezone=zone)
    assert message.startswith("unknown time zone")
    assert zone[:50] in message


def test_local_time_names_the_zone_from_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(time, "tzset"):
        pytest.skip("no time.tzset")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        text = call(tools_of()["current_time"])
    finally:
        monkeypatch.delenv("TZ")  # the process's zone is global: put it back now, not at teardown
        time.tzset()
    assert re.search(r"time zone: America/New_York \((EST, UTC-05:00|EDT, UTC-04:00)\)$", text)


def test_current_time_with_no_timezone_or_null() -> None:
    tool = tools_of()["current_time"]
    assert call(tool).startswith("date: ")
    assert call(tool, timezone=None).startswith("date: ")
    assert call(tool, timezone="  ").startswith("date: ")
    assert refusal(tool, timezone=5) == "timezone must be text"


# --- calculate ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 / 4", "2.5"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2 ** 10", "1024"),
        ("2 ** -1", "0.5"),
        ("-3 ** 2", "-9"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("sqrt(16)", "4.0"),
        ("abs(-3)", "3"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("round(2.567, 2)", "2.57"),
        ("round(2.5)", "2"),
        ("round(1234, -2)", "1200"),
        ("3 × 4 − 1 ÷ 2", "11.5"),
        ("1e3 + .5", "1000.5"),
        ("log(8, 2)", "3.0"),
        ("log10(1000)", "3.0"),
        ("exp(0)", "1.0"),
        ("cos(0) + sin(0)", "1.0"),
        ("pi", repr(math.pi)),
        ("e", repr(math.e)),
        ("2 ** 64", str(2**64)),
        ("1_000 * 3", "3000"),
        ("10 ** 999", str(10**999)),
        ("+".join(["1"] * 200), "200"),  # a long flat sum is not deep nesting
        ("(" * 50 + "1" + ")" * 50, "1"),
    ],
)
def test_arithmetic(expression: str, result: str) -> None:
    assert call(tools_of()["calculate"], expression=expression) == result


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "not arithmetic"),
        ("open('/etc/passwd')", "not arithmetic"),
        ("x + 1", "not arithmetic: unknown name 'x'"),
        ("math.pi", "not arithmetic"),
        ("(1).__class__", "not arithmetic"),
        ("'a' * 3", "not arithmetic"),
        ("[1, 2]", "not arithmetic"),
        ("[x for x in (1, 2)]", "not arithmetic"),
        ("lambda: 1", "not arithmetic"),
        ("1 if 2 else 3", "not arithmetic"),
        ("1 < 2", "not arithmetic: the character '<'"),
        ("1 is 2", "not arithmetic: a comparison"),
        ("1 and 2", "not arithmetic: and/or"),
        ("'1' + '2'", "not arithmetic: the character"),
        ("1 .real", "not arithmetic: the character '.'"),
        ("1if 1else 2", "not a valid expression: '1if'"),
        ("0x1f", "not a valid expression"),
        ("2pi", "not a valid expression"),
        ("1.2.3", "not a valid expression"),
        ("2 ^ 3", "write powers as **"),
        ("1 << 100000", "not arithmetic"),
        ("~1", "not arithmetic"),
        ("True + 1", "not arithmetic"),
        ("1j * 1j", "not a valid expression"),
        ("1,000", "thousands separators"),
        ("sqrt(x=4)", "not arithmetic"),
        ("sqrt(*[4])", "not arithmetic"),
        ("sqrt", "not arithmetic: unknown name 'sqrt'"),
        ("sqrt(1, 2)", "sqrt takes 1 argument, not 2"),
        ("log()", "log takes 1 or 2 arguments, not 0"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("log(1, 1)", "division by zero"),
        ("sqrt(-1)", "math domain error"),
        ("log(0)", "math domain error"),
        ("asin(2)", "math domain error"),
        ("(-8) ** (1 / 3)", "no real-number result"),
        ("2 ** 10 ** 10", "too large"),
        ("9 ** 9 ** 9", "too large"),
        ("(-2) ** 100000", "too large"),
        ("10 ** 999 * 10 ** 999", "too large"),
        ("2.0 ** 10000", "too large"),
        ("1e308 * 10", "too large"),
        ("1e999", "too large"),
        ("exp(1000)", "too large"),
        ("10 ** 400 / 3", "too large"),
        ("sqrt(10 ** 999)", "too large"),
        ("round(5, -10 ** 9)", "round's digits"),
        ("round(5, 0.5)", "whole number"),
        ("1" * 501, "too long"),
        ("-" * 100 + "1", "nested too deeply"),
        ("(" * 210 + "1" + ")" * 210, "not a valid expression"),
        ("sqrt(" * 80 + "1" + ")" * 80, "nested too deeply"),
        ("1 +", "not a valid expression"),
        ("1\x00", "not arithmetic: the character '\\x00'"),
        ("", "empty"),
    ],
)
def test_calculator_refuses(expression: str, reason: str) -> None:
    message = refusal(tools_of()["calculate"], expression=expression)
    assert reason in message


def test_calculator_wants_text() -> None:
    tool = tools_of()["calculate"]
    assert refusal(tool) == "the expression argument is missing"
    assert refusal(tool, expression=12) == "expression must be text"


_ARITHMETIC = "0123456789+-*/%().e_ ,^<>=!&|~abcdeglnopqrstx'\"[]:{}@\\\x00"


def _numbers_ok(value: object) -> bool:
    if isinstance(value, int):
        return value.bit_length() <= 3400
    return isinstance(value, float) and math.isfinite(value)


@pytest.mark.timeout(120)
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=_ARITHMETIC, max_size=120) | st.text(max_size=60))
def test_any_text_is_a_number_or_a_tool_error(expression: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the parser's warnings would print over the TUI
        try:
            value = calc.evaluate(expression)
        except ToolError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert _numbers_ok(value)
    assert [str(w.message) for w in caught] == []


def _expressions() -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.integers(-(10**12), 10**12).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["pi", "e", "tau", "0", "1", "-1", "2", "10", "1e308", "0.0"]),
    )

    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), inner)
        return st.one_of(
            binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda x: f"-{x}"),
            st.tuples(st.sampled_from(calc.FUNCTION_NAMES), inner).map(lambda t: f"{t[0]}({t[1]})"),
            st.tuples(st.sampled_from(["log", "round"]), inner, inner).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        )

    return st.recursive(leaves, grow, max_leaves=40)


@pytest.mark.timeout(120)
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_expressions())
def test_any_arithmetic_is_a_number_or_a_tool_error(expression: str) -> None:
    try:
        value = calc.evaluate(expression)
    except ToolError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert _numbers_ok(value)
        calc.format_number(value)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.integers(-1000, 1000).map(lambda n: f"({n})"),
        lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*", "//", "%"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        max_leaves=12,
    )
)
def test_integer_arithmetic_agrees_with_python(expression: str) -> None:
    try:
        expected = eval(expression)  # the test's own generated integer arithmetic, as the oracle
    except ZeroDivisionError:
        with pytest.raises(ToolError, match="division by zero"):
            calc.evaluate(expression)
        return
    assert calc.evaluate(expression) == expected


# --- read_file and list_folder ------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """allowed/ (notes.txt, sub/deep.txt, links in and out), outside/secret.txt, allowed-evil/x.txt."""
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "notes.txt").write_text("hello notes\n")
    (allowed / "sub" / "deep.txt").write_text("deep text")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    (tmp_path / "allowed-evil").mkdir()
    (tmp_path / "allowed-evil" / "x.txt").write_text("TOP SECRET")
    return tmp_path


def file_tools(root: Path, **kwargs: Any) -> dict[str, Tool]:
    return tools_of(allowed_dirs=[root / "allowed"], **kwargs)


def test_read_relative_and_absolute(tree: Path) -> None:
    read = file_tools(tree)["read_file"]
    assert call(read, path="notes.txt") == "hello notes\n"
    assert call(read, path="sub/deep.txt") == "deep text"
    assert call(read, path="./sub/../notes.txt") == "hello notes\n"
    assert call(read, path=str(tree / "allowed" / "sub" / "deep.txt")) == "deep text"


def test_second_allowed_folder(tree: Path) -> None:
    read = tools_of(allowed_dirs=[tree / "allowed", tree / "outside"])["read_file"]
    assert call(read, path=str(tree / "outside" / "secret.txt")) == "TOP SECRET"
    assert "no such file" in refusal(read, path="secret.txt")  # relative paths are under the first


@posix_only
@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "sub/../../outside/secret.txt",
        "{root}/outside/secret.txt",
        "{root}/allowed/../outside/secret.txt",
        "{root}/allowed-evil/x.txt",  # a sibling whose name starts the same
        "/etc/passwd",
        "out-link",
        "out-dir-link/secret.txt",
        "sub/up-link/outside/secret.txt",
    ],
)
def test_nothing_outside_is_read(tree: Path, path: str) -> None:
    (tree / "allowed" / "out-link").symlink_to(tree / "outside" / "secret.txt")
    (tree / "allowed" / "out-dir-link").symlink_to(tree / "outside")
    (tree / "allowed" / "sub" / "up-link").symlink_to("../..")
    given = path.format(root=tree)
    message = refusal(file_tools(tree)["read_file"], path=given)
    assert message == f"cannot read {given!r}: it is outside the allowed folders"
    assert "SECRET" not in message


def test_missing_outside_looks_like_existing_outside(tree: Path) -> None:
    read = file_tools(tree)["read_file"]
    there = refusal(read, path=str(tree / "outside" / "secret.txt"))
    absent = refusal(read, path=str(tree / "outside" / "absent.txt"))
    assert there.split(": ", 1)[1] == absent.split(": ", 1)[1] == "it is outside the allowed folders"
    assert refusal(read, path="absent.txt") == "cannot read 'absent.txt': no such file or folder"
    assert "no such file" in refusal(read, path="notes.txt/more")


@posix_only
def test_links_that_stay_inside_are_followed(tree: Path) -> None:
    (tree / "allowed" / "in-link").symlink_to("sub/deep.txt")
    (tree / "allowed" / "sub" / "back").symlink_to("..")
    tools = file_tools(tree)
    assert call(tools["read_file"], path="in-link") == "deep text"
    assert call(tools["read_file"], path="sub/back/notes.txt") == "hello notes\n"
    assert "notes.txt" in call(tools["list_folder"], path="sub/back")


@posix_only
def test_allowed_folder_given_through_a_link(tree: Path) -> None:
    link = tree / "link-to-allowed"
    link.symlink_to(tree / "allowed")
    tools = tools_of(allowed_dirs=[link])
    read = tools["read_file"]
    assert call(read, path="notes.txt") == "hello notes\n"
    assert call(read, path=str(link / "sub" / "deep.txt")) == "deep text"
    assert call(read, path=str(tree / "allowed" / "notes.txt")) == "hello notes\n"  # the real path is the same place
    assert "outside" in refusal(read, path=str(link / ".." / "outside" / "secret.txt"))
    assert "notes.txt" in call(tools["list_folder"])


@posix_only
def test_link_loop(tree: Path) -> None:
    (tree / "allowed" / "loop").symlink_to("loop")
    message = refusal(file_tools(tree)["read_file"], path="loop")
    assert message.startswith("cannot read 'loop': ")


def test_allowed_folder_missing(tmp_path: Path) -> None:
    read = tools_of(allowed_dirs=[tmp_path / "nowhere"])["read_file"]
    assert refusal(read, path="x.txt") == "cannot read 'x.txt': none of the allowed folders exists"


@posix_only
@pytest.mark.timeout(10)
def test_fifo_is_never_opened(tree: Path) -> None:
    os.mkfifo(tree / "allowed" / "pipe")
    tools = file_tools(tree)
    assert refusal(tools["read_file"], path="pipe") == "cannot read 'pipe': it is a named pipe, not a regular file"
    assert "pipe (a named pipe)" in call(tools["list_folder"]).splitlines()


@posix_only
@pytest.mark.timeout(10)
def test_device_is_refused() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    read = tools_of(allowed_dirs=[Path("/dev")])["read_file"]
    assert refusal(read, path="zero") == "cannot read 'zero': it is a device, not a regular file"


def test_size_cap(tree: Path) -> None:
    (tree / "allowed" / "ten.txt").write_text("x" * 10)
    (tree / "allowed" / "eleven.txt").write_text("x" * 11)
    read = file_tools(tree, read_max_bytes=10)["read_file"]
    assert call(read, path="ten.txt") == "x" * 10
    message = refusal(read, path="eleven.txt")
    assert message == "cannot read 'eleven.txt': it is 11 bytes, over the 10-byte limit (tools.read_max_bytes)"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"text\x00more", "it is a binary file, not text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "it is a binary file, not text"),
        (b"caf\xe9 latin-1", "it is not UTF-8 text (a binary file?)"),
    ],
)
def test_binary_files(tree: Path, content: bytes, reason: str) -> None:
    (tree / "allowed" / "blob").write_bytes(content)
    assert refusal(file_tools(tree)["read_file"], path="blob") == f"cannot read 'blob': {reason}"


def test_text_edges(tree: Path) -> None:
    (tree / "allowed" / "bom.txt").write_bytes(b"\xef\xbb\xbfh\xc3\xa9")
    (tree / "allowed" / "empty.txt").write_bytes(b"")
    read = file_tools(tree)["read_file"]
    assert call(read, path="bom.txt") == "hé"
    assert call(read, path="empty.txt") == "(the file is empty)"
    assert refusal(read, path="sub") == "cannot read 'sub': it is a folder (use list_folder)"
    assert refusal(read, path=".") == "cannot read '.': it is a folder (use list_folder)"
    assert refusal(read, path=5) == "path must be text"
    assert refusal(read) == "the path argument is missing"
    assert "not a usable path" in refusal(read, path="a\x00b")


# Races: the path checked is swapped for something else before it is opened.


def _after_locate(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    real = builtin._Folders._locate

    def locate_then_swap(self: Any, given: str, verb: str) -> tuple[Path, tuple[str, ...]]:
        found = real(self, given, verb)
        swap()
        return found

    monkeypatch.setattr(builtin._Folders, "_locate", locate_then_swap)


@posix_only
def test_file_swapped_for_a_link_is_not_followed(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tree / "allowed" / "notes.txt"

    def swap() -> None:
        target.unlink()
        target.symlink_to(tree / "outside" / "secret.txt")

    _after_locate(monkeypatch, swap)
    message = refusal(file_tools(tree)["read_file"], path="notes.txt")
    assert message.startswith("cannot read 'notes.txt': it is a link") or "changed" in message
    assert "SECRET" not in message


@posix_only
def test_folder_swapped_for_a_link_is_not_followed(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tree / "allowed" / "sub"
    (tree / "outside" / "deep.txt").write_text("TOP SECRET")

    def swap() -> None:
        sub.rename(tree / "old-sub")
        sub.symlink_to(tree / "outside")

    _after_locate(monkeypatch, swap)
    tools = file_tools(tree)
    message = refusal(tools["read_file"], path="sub/deep.txt")
    assert "changed while being opened" in message
    assert "SECRET" not in message


@posix_only
def test_folder_to_list_swapped_for_a_link(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = tree / "allowed" / "sub"

    def swap() -> None:
        sub.rename(tree / "old-sub")
        sub.symlink_to(tree / "outside")

    _after_locate(monkeypatch, swap)
    message = refusal(file_tools(tree)["list_folder"], path="sub")
    assert "secret" not in message.casefold()


@posix_only
@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("swap_in", "reason"),
    [
        (lambda p, outside: os.mkfifo(p), "it is a named pipe, not a regular file"),  # opened without blocking
        (lambda p, outside: p.symlink_to(outside), "it changed while being opened"),  # O_NOFOLLOW
    ],
)
def test_swapped_after_the_look_before_the_open(
    tree: Path, monkeypatch: pytest.MonkeyPatch, swap_in: Callable[[Path, Path], None], reason: str
) -> None:
    target = tree / "allowed" / "notes.txt"
    real_check = builtin._check_file
    looks: list[os.stat_result] = []

    def check_then_swap(given: str, st: os.stat_result, cap: int) -> None:
        real_check(given, st, cap)
        looks.append(st)
        if len(looks) == 1:
            target.unlink()
            swap_in(target, tree / "outside" / "secret.txt")

    monkeypatch.setattr(builtin, "_check_file", check_then_swap)
    message = refusal(file_tools(tree)["read_file"], path="notes.txt")
    assert message.startswith(f"cannot read 'notes.txt': {reason}")
    assert "SECRET" not in message


def test_file_grown_after_the_look_is_refused(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tree / "allowed" / "notes.txt"
    real_check = builtin._check_file

    looks = []

    def check_then_grow(given: str, st: os.stat_result, cap: int) -> None:
        real_check(given, st, cap)
        looks.append(st)
        if len(looks) == 2:  # after the look at what was opened, before it is read
            with target.open("a") as f:
                f.write("y" * 100)

    monkeypatch.setattr(builtin, "_check_file", check_then_grow)
    message = refusal(file_tools(tree, read_max_bytes=50)["read_file"], path="notes.txt")
    assert message == "cannot read 'notes.txt': it is over the 50-byte limit (tools.read_max_bytes)"


def test_list_folder(tree: Path) -> None:
    allowed = tree / "allowed"
    (allowed / "Beta").mkdir()
    (allowed / "alpha.bin").write_bytes(b"\x00" * 1500)
    listing = call(file_tools(tree)["list_folder"])
    assert listing.splitlines() == ["alpha.bin  1.5 KB", "Beta/", "notes.txt  12 B", "sub/"]
    assert call(file_tools(tree)["list_folder"], path="sub") == "deep.txt  9 B"
    assert call(file_tools(tree)["list_folder"], path=str(allowed / "sub")) == "deep.txt  9 B"
    (allowed / "empty").mkdir()
    assert call(file_tools(tree)["list_folder"], path="empty") == "(the folder is empty)"


def test_list_folder_refusals(tree: Path) -> None:
    listing = file_tools(tree)["list_folder"]
    assert refusal(listing, path="notes.txt") == "cannot list 'notes.txt': it is a file (use read_file)"
    assert refusal(listing, path="..") == "cannot list '..': it is outside the allowed folders"
    assert refusal(listing, path="nope") == "cannot list 'nope': no such file or folder"
    assert refusal(listing, path=str(tree / "allowed-evil")).endswith("it is outside the allowed folders")


def test_list_folder_cap(tree: Path) -> None:
    many = tree / "allowed" / "many"
    many.mkdir()
    for i in range(MAX_ENTRIES + 7):
        (many / f"f{i:04d}.txt").write_bytes(b"")
    lines = call(file_tools(tree)["list_folder"], path="many").splitlines()
    assert len(lines) == MAX_ENTRIES + 1
    assert lines[0] == "f0000.txt  0 B"
    assert lines[-1] == "… and 7 more"


@posix_only
@pytest.mark.skipif(sys.platform == "darwin", reason="APFS refuses names that are not UTF-8")
def test_list_folder_names_cannot_forge_lines(tree: Path) -> None:
    (tree / "allowed" / "sub" / "a\nfake.txt  1 B").write_text("")
    os.close(os.open(os.fsencode(tree / "allowed" / "sub") + b"/bad-\xff", os.O_CREAT | os.O_WRONLY, 0o600))
    lines = call(file_tools(tree)["list_folder"], path="sub").splitlines()
    assert lines == ["a\\nfake.txt  1 B  0 B", "bad-\\xff  0 B", "deep.txt  9 B"]


# --- run_shell ----------------------------------------------------------------------------------


def shell(tmp_path: Path, **kwargs: Any) -> Tool:
    return tools_of(shell=True, allowed_dirs=[tmp_path], **kwargs)["run_shell"]


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped yet counts: it runs nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


@posix_only
def test_shell_output_and_exit_code(tmp_path: Path) -> None:
    run = shell(tmp_path)
    assert call(run, command="echo out; echo err >&2; exit 3") == "exit code: 3\noutput:\nout\nerr\n"
    assert call(run, command="true") == "exit code: 0\n(no output)"
    assert call(run, command="pwd") == f"exit code: 0\noutput:\n{tmp_path.resolve()}\n"
    assert call(run, command="cat") == "exit code: 0\n(no output)"  # stdin is /dev/null: nothing waits on it
    assert call(run, command="printf '\\377ok'") == "exit code: 0\noutput:\n\ufffdok"
    assert call(run, command="kill -9 $$").startswith("killed by signal SIGKILL")


@posix_only
def test_shell_runs_in_home_without_allowed_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    run = tools_of(shell=True)["run_shell"]
    assert call(run, command="pwd") == f"exit code: 0\noutput:\n{tmp_path.resolve()}\n"


@posix_only
def test_shell_output_is_capped(tmp_path: Path) -> None:
    run = shell(tmp_path, result_chars=100)
    # (yes's own "Broken pipe" line, which it writes where SIGPIPE is blocked, is not the output under test)
    text = call(run, command="yes abcdefgh 2>/dev/null | head -c 200000")
    lines = text.split("\n")
    assert lines[0] == "exit code: 0"
    body = text.split("output:\n", 1)[1]
    assert body.startswith("abcdefgh\n" * 11)
    assert body.endswith("\n… (output cut: 200,000 bytes in all)")
    assert len(body) < 200


@posix_only
def test_shell_refusals(tmp_path: Path) -> None:
    run = shell(tmp_path)
    assert refusal(run, command="   ") == "the command is empty"
    assert refusal(run) == "the command argument is missing"
    assert "at most" in refusal(run, command="echo \x00")
    assert "at most" in refusal(run, command="x" * 10_001)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ToolError, match="stopped before it ran"):
        call(run, cancel, command=f"touch {tmp_path / 'ran'}")
    assert not (tmp_path / "ran").exists()
    missing = shell(tmp_path / "gone")
    assert "does not exist" in refusal(missing, command="true")


def _group_started(pids: Path) -> Iterator[int]:
    assert eventually(lambda: pids.exists() and len(pids.read_text().split()) == 2, within=8.0)
    yield from (int(p) for p in pids.read_text().split())


@posix_only
@pytest.mark.timeout(30)
def test_shell_time_limit_kills_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    run = shell(tmp_path, timeout_s=1.0)
    with pytest.raises(ToolError, match=r"ran over 1 s and was killed \(tools.timeout_s\)"):
        call(run, command=f"sleep 600 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait")
    leader, child = _group_started(pids)
    assert eventually(lambda: _gone(leader) and _gone(child), within=8.0)


@posix_only
@pytest.mark.timeout(30)
def test_shell_cancel_kills_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    run = shell(tmp_path, timeout_s=600)
    cancel = threading.Event()
    outcome: list[BaseException | str] = []

    def worker() -> None:
        try:
            outcome.append(
                call(run, cancel, command=f"sleep 600 & echo $$ $! > {pids}.tmp; mv {pids}.tmp {pids}; wait")
            )
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=worker)
    thread.start()
    leader, child = _group_started(pids)
    assert not _gone(leader) and not _gone(child)
    cancel.set()
    thread.join(20)
    assert not thread.is_alive()
    assert isinstance(outcome[0], ToolError) and "stopped" in str(outcome[0])
    assert eventually(lambda: _gone(leader) and _gone(child), within=8.0)


@posix_only
@pytest.mark.timeout(30)
def test_shell_returns_when_the_shell_exits_even_with_a_background_job(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    run = shell(tmp_path, timeout_s=60)
    text = call(run, command=f"sleep 30 & echo $$ $! > {pids}; echo started")
    assert text == "exit code: 0\noutput:\nstarted\n"
    _, child = (int(p) for p in pids.read_text().split())
    os.kill(child, 9)  # the test's own clean-up of the job the command left running


@posix_only
def test_a_file_the_user_may_not_read_is_a_one_line_refusal() -> None:
    """Refused permission: as root (CI), the read runs in a child that drops to `nobody` first
    (in a folder outside pytest's, which is the owner's alone)."""
    import shutil
    import tempfile

    allowed = Path(tempfile.mkdtemp(prefix="edgeassist-perm-"))
    try:
        allowed.chmod(0o755)
        (allowed / "locked.txt").write_text("PRIVATE\n")
        (allowed / "locked.txt").chmod(0o000)
        said = _read_as_another_user(allowed, "locked.txt")
    finally:
        shutil.rmtree(allowed, ignore_errors=True)
    assert said == "refused: cannot read 'locked.txt': permission denied"


def _read_as_another_user(allowed: Path, name: str) -> str:
    """What `read_file` says of `name`, asked in a child process that cannot override file permissions."""
    read = tools_of(allowed_dirs=[allowed])["read_file"]
    return said_as_nobody(lambda: call(read, path=name), ToolError)
