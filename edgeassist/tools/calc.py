"""Arithmetic for the `calculate` tool: parsed with `ast`, walked over a whitelist, never run as code.

Nothing here calls `eval`, `exec` or `compile` on the expression. Every way to make the work
unbounded is cut off before it starts: the text's length, how deeply it nests, the size of every
integer (a power is checked before it is computed), and float overflow. Anything else in the
expression (a name, an attribute, a string, a comparison, a lambda) is "not arithmetic".
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from typing import Any

from edgeassist.errors import ToolError

Number = int | float

MAX_CHARS = 500
"""Longest expression accepted."""
MAX_DEPTH = 60
"""Deepest nesting of parentheses, function calls, unary signs and right-hand operands."""
MAX_DIGITS = 1000
"""Largest integer kept, in decimal digits (about 10**1000)."""
_MAX_BITS = math.ceil(MAX_DIGITS * math.log2(10))
MAX_ROUND_DIGITS = 100
"""Most digits `round` may keep or drop."""


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise ToolError("round's second argument must be a whole number of digits")
    if abs(ndigits) > MAX_ROUND_DIGITS:
        # round(n, -10**9) would compute 10**(10**9)
        raise ToolError(f"round's digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}")
    return round(x, ndigits)


# name -> (function, fewest arguments, most arguments)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    "sqrt": (math.sqrt, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "log": (math.log, 1, 2),
    "log2": (math.log2, 1, 1),
    "log10": (math.log10, 1, 1),
    "exp": (math.exp, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

FUNCTION_NAMES = tuple(_FUNCTIONS)
"""The functions an expression may call."""
CONSTANT_NAMES = tuple(_CONSTANTS)
"""The constants an expression may name."""

_ALLOWED = f"allowed: numbers, + - * / // % **, ( ), {' '.join(_FUNCTIONS)}, {' '.join(_CONSTANTS)}"

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_HINTS: dict[type[ast.AST], str] = {
    ast.BitXor: "^ (write powers as **)",
    ast.Compare: "a comparison",
    ast.BoolOp: "and/or",
    ast.Tuple: "a list of values (write numbers without thousands separators)",
}


# What an arithmetic expression is made of. Checking this before `ast.parse` keeps strings,
# backslashes and odd literals (`1if`) away from the parser, which would print warnings about them.
_TOKEN = re.compile(
    r"(?P<space>[ \t\r\n]+)"
    r"|(?P<number>(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>\*\*|//|[-+*/%(),^])"
)
_SIGNS = str.maketrans({"×": "*", "÷": "/", "−": "-"})


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, or `ToolError` saying why there is none."""
    if not isinstance(expression, str):
        raise ToolError("expression must be text, such as 2 * (3 + 4)")
    text = expression.strip().translate(_SIGNS)
    if not text:
        raise ToolError("expression is empty")
    if len(text) > MAX_CHARS:
        raise ToolError(f"expression is too long ({len(text)} characters, at most {MAX_CHARS})")
    _check_tokens(text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ToolError(f"not a valid expression: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError):  # NUL characters; the parser's own nesting limits
        raise ToolError("not a valid expression") from None
    return _Walker(text).value(tree.body, 0)


def _check_tokens(text: str) -> None:
    pos = 0
    previous: re.Match[str] | None = None
    while pos < len(text):
        token = _TOKEN.match(text, pos)
        if token is None:
            raise ToolError(f"not arithmetic: the character {text[pos]!r} ({_ALLOWED})")
        if previous is not None and previous.lastgroup == "number" and token.lastgroup in ("number", "name"):
            raise ToolError(f"not a valid expression: {text[previous.start() : token.end()]!r}")
        previous, pos = token, token.end()


def format_number(value: Number) -> str:
    """An integer as all its digits, a float as the shortest text that reads back as the same float."""
    return str(value) if isinstance(value, int) else repr(value)


class _Walker:
    """Evaluates the whitelisted nodes of one parsed expression."""

    def __init__(self, source: str) -> None:
        self.source = source

    def value(self, node: ast.expr, depth: int) -> Number:
        if depth > MAX_DEPTH:
            raise ToolError(f"expression is nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.BinOp):
            return self._chain(node, depth)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.value(node.operand, depth + 1)
            return -operand if isinstance(node.op, ast.USub) else +operand
        if isinstance(node, ast.Name):
            if node.id in _CONSTANTS:
                return _CONSTANTS[node.id]
            raise self._refuse(node, f"unknown name {node.id!r}")
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise self._refuse(node)

    def _constant(self, node: ast.Constant) -> Number:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._refuse(node)
        return _checked(v)

    def _chain(self, node: ast.BinOp, depth: int) -> Number:
        # `1 + 2 + 3 + ...` nests to the left; walk that spine in a loop so a long sum is not "deep".
        spine = [node]
        left = node.left
        while isinstance(left, ast.BinOp):
            spine.append(left)
            left = left.left
        result = self.value(left, depth + 1)
        for op_node in reversed(spine):
            apply = _BINARY.get(type(op_node.op))
            if apply is None:
                raise self._refuse(op_node, _HINTS.get(type(op_node.op)))
            right = self.value(op_node.right, depth + 1)
            result = _apply(apply, type(op_node.op), result, right)
        return result

    def _call(self, node: ast.Call, depth: int) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise self._refuse(node)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self._refuse(node)
        name = node.func.id
        fn, fewest, most = _FUNCTIONS[name]
        if not fewest <= len(node.args) <= most:
            wanted = str(fewest) if fewest == most else f"{fewest} or {most}"
            raise ToolError(f"{name} takes {wanted} argument{'s' if most > 1 else ''}, not {len(node.args)}")
        args = [self.value(a, depth + 1) for a in node.args]
        try:
            return _checked(fn(*args))
        except ValueError:
            raise ToolError(f"{name} is not defined there (math domain error)") from None
        except OverflowError:
            raise ToolError(f"the result of {name} is too large") from None
        except ZeroDivisionError:
            raise ToolError(f"division by zero in {name}") from None

    def _refuse(self, node: ast.AST, hint: str | None = None) -> ToolError:
        what = hint or _HINTS.get(type(node))
        if what is None:
            segment = ast.get_source_segment(self.source, node) or type(node).__name__
            what = segment if len(segment) <= 40 else segment[:37] + "..."
        return ToolError(f"not arithmetic: {what} ({_ALLOWED})")


def _apply(apply: Callable[[Any, Any], Any], op: type[ast.operator], a: Number, b: Number) -> Number:
    if op is ast.Pow and isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
        # The result has at least (bits(a) - 1) * b bits: refuse before computing it.
        if (abs(a).bit_length() - 1) * b > _MAX_BITS:
            raise ToolError(f"the result is too large (over {MAX_DIGITS} digits)")
    try:
        result = apply(a, b)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    if isinstance(result, complex):  # (-8) ** (1/3)
        raise ToolError("no real-number result (a negative number to a fractional power)")
    return _checked(result)


def _checked(value: Number) -> Number:
    """`value`, unless it is an integer over the size limit, infinite or not a number."""
    if isinstance(value, int):
        if value.bit_length() > _MAX_BITS:
            raise ToolError(f"the result is too large (over {MAX_DIGITS} digits)")
    elif math.isinf(value):
        raise ToolError("the result is too large for a floating-point number")
    elif math.isnan(value):
        raise ToolError("the result is not a number")
    return value
