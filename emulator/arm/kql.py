"""A small, strict KQL subset: what the ARM simulator's Resource Graph endpoint evaluates.

Why: Azure Resource Graph answers anything it cannot parse with 400 ``BadRequest`` /
``InvalidQuery`` (arc-and-resource-graph.md §4.6). A simulator that ignored unknown syntax would
let a query pass locally and fail in Azure, so everything outside this subset raises
:class:`KqlError` (the endpoint turns it into ARG's error body), and column names are resolved
when the query is compiled, as Kusto does ("Failed to resolve scalar expression named ...").

SUPPORTED (§6.3 of the reference, the parts the app and the documented samples use):

* a table name (case-insensitive), then ``|``-separated operators: ``where``, ``extend``,
  ``project`` (``name = expr`` or a column / property path), ``project-away``, ``summarize
  aggs [by keys]`` (``count()``, ``countif()``, ``dcount()``, ``make_set()``, ``min()``, ``max()``,
  ``sum()``), ``count``, ``distinct``, ``order by`` / ``sort by`` (``asc``/``desc``, several keys;
  KQL's default is ``desc``), ``top N by``, ``take`` / ``limit``;
* comparisons ``==``, ``!=``, ``=~``, ``!~``, ``<``, ``>``, ``<=``, ``>=``, ``in``, ``in~``,
  ``!in``, ``!in~``, ``has``, ``!has`` (whole term, case-insensitive), ``contains``, ``!contains``,
  ``startswith``, ``!startswith``, ``endswith``, ``!endswith`` (case-insensitive); ``and``, ``or``,
  ``not()``; ``+ - * / %``;
* scalars ``tostring``, ``toint``, ``tolong``, ``todouble``, ``toreal``, ``tobool``, ``todatetime``,
  ``tolower``, ``toupper``, ``strcat``, ``split(s, sep[, i])`` (the 3-argument form returns a
  one-element array, §5.7), ``parse_json``/``todynamic``, ``isnull``, ``isnotnull``, ``isempty``,
  ``isnotempty``, ``iff``/``iif``, ``coalesce``, ``array_length``, ``now()``, ``ago(7d)``;
* output column names as Kusto derives them: ``a.b`` → ``a_b``, ``tostring(a.b)`` → ``a_b`` (the
  REST spec's "Access a properties field" example), ``count()`` → ``count_``, else ``Column<n>``;
* dynamic access ``properties.a.b``, ``x['k']``, ``x[10]`` (case-sensitive keys, missing → null: so
  ``tags['patchRing']`` does not find a tag written ``PatchRing``; ``parse_json(tolower(tostring(tags)))``
  gives a bag with lower-case keys);
  string literals in single or double quotes, numbers, timespans (``7d``, ``12h``, ``30m``,
  ``10s``), ``true``/``false``, ``//`` comments, multi-line text.

LIMITATIONS: no ``join``, ``union``, ``mv-expand``, ``parse``, ``let``, facets or ``hash()``;
``tostring()`` of an array/object is compact JSON; comparisons between a string and a dynamic
value compare the value's string form; datetimes are compared after ``todatetime``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["KqlError", "Query", "compile_query", "to_json_value"]

Row = dict[str, Any]


class KqlError(Exception):
    """A query outside the subset. ``code`` is ARG's detail code (``ParserFailure``,
    ``UnknownFunction``, ``InvalidQuery`` ...), ``token`` the offending token when known."""

    def __init__(self, message: str, *, code: str = "ParserFailure", token: str | None = None,
                 position: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.token = token
        self.position = position


# ----------------------------------------------------------------------------------- tokens
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
  | (?P<timespan>\d+(?:\.\d+)?(?:ms|d|h|m|s)(?![A-Za-z0-9_]))
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<op>==|!=|=~|!~|<=|>=|!(?=[A-Za-z])|[<>=(),.\[\]|+\-*/%~])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z][A-Za-z0-9_]*)?)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Tok:
    kind: str  # str | num | timespan | op | ident | eof
    text: str
    pos: int
    value: Any = None


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), body)


def _timespan(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)", text)
    assert m
    n, unit = float(m.group(1)), m.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n),
            "s": timedelta(seconds=n), "ms": timedelta(milliseconds=n)}[unit]


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise KqlError(f"unexpected character {text[pos]!r} at position {pos}", token=text[pos], position=pos)
        kind = m.lastgroup or ""
        tok = m.group()
        if kind == "str":
            out.append(Tok("str", tok, pos, _unquote(tok)))
        elif kind == "num":
            out.append(Tok("num", tok, pos, float(tok) if "." in tok else int(tok)))
        elif kind == "timespan":
            out.append(Tok("timespan", tok, pos, _timespan(tok)))
        elif kind in ("op", "ident"):
            out.append(Tok(kind, tok, pos))
        pos = m.end()
    out.append(Tok("eof", "<EOF>", len(text)))
    return out


# ----------------------------------------------------------------------------------- values
def to_json_value(value: Any) -> Any:
    """A value as ARG serialises it (datetimes as ISO strings, timespans as ``d.hh:mm:ss``)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, list):
        return [to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    return value


def _tostring(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(to_json_value(value), separators=(",", ":"))
    if isinstance(value, datetime):
        return str(to_json_value(value))
    return str(value)


def _toint(value: Any) -> int | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return int(value)
    try:
        return int(float(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        return None


def _todouble(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, (dict, list)) else float(value)
    except (TypeError, ValueError):
        return None


def _tobool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _todatetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _split(s: Any, sep: Any, index: Any = None) -> list[Any]:
    parts = _tostring(s).split(_tostring(sep)) if _tostring(sep) else [_tostring(s)]
    if index is None:
        return parts
    i = _toint(index)
    if i is None:
        return []
    return [parts[i]] if -len(parts) <= i < len(parts) else []


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


def _array_length(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None


def _coerce_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Values compared by ``==`` etc.: a string against a non-string compares string forms."""
    if isinstance(a, datetime) or isinstance(b, datetime):
        return (a if isinstance(a, datetime) else _todatetime(a)), (b if isinstance(b, datetime) else _todatetime(b))
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        return a, b
    if isinstance(a, str) or isinstance(b, str):
        return _tostring(a), _tostring(b)
    return a, b


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    x, y = _coerce_pair(a, b)
    return bool(x == y)


def _eq_ci(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    return _tostring(a).lower() == _tostring(b).lower()


def _order(a: Any, b: Any, op: str) -> bool:
    if a is None or b is None:
        return False
    x, y = _coerce_pair(a, b)
    try:
        return bool({"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op])
    except TypeError:
        return False


def _has(a: Any, term: Any) -> bool:
    t = _tostring(term)
    if not t:
        return True
    pattern = r"(?<![A-Za-z0-9])" + re.escape(t) + r"(?![A-Za-z0-9])"
    return re.search(pattern, _tostring(a), re.IGNORECASE) is not None


_STRING_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "has": _has,
    "contains": lambda a, b: _tostring(b).lower() in _tostring(a).lower(),
    "startswith": lambda a, b: _tostring(a).lower().startswith(_tostring(b).lower()),
    "endswith": lambda a, b: _tostring(a).lower().endswith(_tostring(b).lower()),
}


# ----------------------------------------------------------------------------------- expressions
Expr = Callable[[Row, "Env"], Any]


@dataclass
class Env:
    now: datetime


_SCALARS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    # name: (min args, max args, fn)
    "tostring": (1, 1, _tostring),
    "toint": (1, 1, _toint),
    "tolong": (1, 1, _toint),
    "todouble": (1, 1, _todouble),
    "toreal": (1, 1, _todouble),
    "tobool": (1, 1, _tobool),
    "toboolean": (1, 1, _tobool),
    "todatetime": (1, 1, _todatetime),
    "tolower": (1, 1, lambda v: _tostring(v).lower()),
    "toupper": (1, 1, lambda v: _tostring(v).upper()),
    "strcat": (1, 64, lambda *vs: "".join(_tostring(v) for v in vs)),
    "split": (2, 3, _split),
    "parse_json": (1, 1, _parse_json),
    "todynamic": (1, 1, _parse_json),
    "isnull": (1, 1, lambda v: v is None),
    "isnotnull": (1, 1, lambda v: v is not None),
    "isempty": (1, 1, _is_empty),
    "isnotempty": (1, 1, lambda v: not _is_empty(v)),
    "iff": (3, 3, lambda c, a, b: a if _tobool(c) else b),
    "iif": (3, 3, lambda c, a, b: a if _tobool(c) else b),
    "coalesce": (1, 64, lambda *vs: next((v for v in vs if not _is_empty(v)), None)),
    "array_length": (1, 1, _array_length),
    "not": (1, 1, lambda v: not _tobool(v)),
}
_AGGREGATES = {"count", "countif", "dcount", "make_set", "min", "max", "sum"}
_COMPARE = {"==", "!=", "=~", "!~", "<", ">", "<=", ">="}


class _Parser:
    def __init__(self, text: str, now: datetime) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.now = now
        self.columns: list[str] = []

    # -- token helpers ------------------------------------------------------------------------
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def peek(self, n: int = 1) -> Tok:
        return self.toks[min(self.i + n, len(self.toks) - 1)]

    def fail(self, expected: str, tok: Tok | None = None) -> KqlError:
        tok = tok or self.tok
        return KqlError(f"Query could not be parsed at '{tok.text}' (position {tok.pos}): expected {expected}",
                        token=tok.text, position=tok.pos)

    def next(self) -> Tok:
        tok = self.tok
        self.i += 1
        return tok

    def is_op(self, text: str) -> bool:
        return self.tok.kind == "op" and self.tok.text == text

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text in words

    def expect_op(self, text: str) -> Tok:
        if not self.is_op(text):
            raise self.fail(f"'{text}'")
        return self.next()

    def expect_word(self, *words: str) -> Tok:
        if not self.is_word(*words):
            raise self.fail(" or ".join(f"'{w}'" for w in words))
        return self.next()

    def ident(self) -> str:
        if self.tok.kind == "ident":
            return self.next().text
        if self.is_op("[") and self.peek().kind == "str" and self.peek(2).text == "]":
            self.next()
            name = str(self.next().value)
            self.next()
            return name
        raise self.fail("a name")

    # -- expressions --------------------------------------------------------------------------
    def expr(self) -> Expr:
        return self.or_expr()

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.is_word("or"):
            self.next()
            right = self.and_expr()
            left = _bool_op(left, right, either=True)
        return left

    def and_expr(self) -> Expr:
        left = self.cmp_expr()
        while self.is_word("and"):
            self.next()
            right = self.cmp_expr()
            left = _bool_op(left, right, either=False)
        return left

    def _string_op(self) -> tuple[str, bool] | None:
        """``has`` / ``!has`` / ``contains`` ... at the cursor: (name, negated), consuming it."""
        if self.tok.kind == "ident" and self.tok.text in _STRING_OPS:
            return self.next().text, False
        if self.is_op("!") and self.peek().kind == "ident" and self.peek().text in _STRING_OPS:
            self.next()
            return self.next().text, True
        return None

    def _in_op(self) -> tuple[bool, bool] | None:
        """``in`` / ``in~`` / ``!in`` / ``!in~``: (case-insensitive, negated), consuming it."""
        neg = False
        if self.is_op("!") and self.peek().kind == "ident" and self.peek().text == "in":
            self.next()
            neg = True
        elif not self.is_word("in"):
            return None
        self.next()
        ci = False
        if self.is_op("~"):
            self.next()
            ci = True
        return ci, neg

    def cmp_expr(self) -> Expr:
        left = self.add_expr()
        if self.tok.kind == "op" and self.tok.text in _COMPARE:
            op = self.next().text
            right = self.add_expr()
            return _compare(op, left, right)
        found = self._string_op()
        if found:
            name, neg = found
            right = self.add_expr()
            fn = _STRING_OPS[name]
            return _binary(left, right, _negated(fn) if neg else fn)
        found_in = self._in_op()
        if found_in:
            ci, neg = found_in
            self.expect_op("(")
            items = [self.expr()]
            while self.is_op(","):
                self.next()
                items.append(self.expr())
            self.expect_op(")")
            return _in(left, items, ci, neg)
        if self.is_op("!") or (self.tok.kind == "ident" and self.tok.text in ("matches", "between", "like")):
            raise KqlError(f"operator '{self.tok.text}' is not supported", token=self.tok.text, position=self.tok.pos)
        return left

    def add_expr(self) -> Expr:
        left = self.mul_expr()
        while self.tok.kind == "op" and self.tok.text in "+-" and self.tok.text:
            op = self.next().text
            right = self.mul_expr()
            left = _arith(op, left, right)
        return left

    def mul_expr(self) -> Expr:
        left = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            op = self.next().text
            right = self.unary()
            left = _arith(op, left, right)
        return left

    def unary(self) -> Expr:
        if self.is_op("-"):
            self.next()
            inner = self.unary()
            return _unary(inner, lambda v: -v if isinstance(v, (int, float, timedelta)) else None)
        return self.postfix()

    def postfix(self) -> Expr:
        base = self.primary()
        while True:
            if self.is_op("."):
                self.next()
                if self.tok.kind != "ident":
                    raise self.fail("a property name")
                key = self.next().text
                base = _binary(base, _const(key), _member)
            elif self.is_op("["):
                self.next()
                index = self.expr()
                self.expect_op("]")
                base = _binary(base, index, _member)
            else:
                return base

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind in ("str", "num", "timespan"):
            self.next()
            return _const(tok.value)
        if self.is_op("("):
            self.next()
            inner = self.expr()
            self.expect_op(")")
            return inner
        if self.is_op("[") and self.peek().kind == "str":
            name = self.ident()
            return self._column(name, tok)
        if tok.kind != "ident":
            raise self.fail("an expression")
        name = self.next().text
        if name in ("true", "false"):
            flag = name == "true"
            return lambda r, e: flag
        if name in ("null",):
            return lambda r, e: None
        if self.is_op("("):
            return self.call(name, tok)
        return self._column(name, tok)

    def _column(self, name: str, tok: Tok) -> Expr:
        if name not in self.columns:
            raise KqlError(f"Failed to resolve scalar expression named '{name}'", code="InvalidQuery",
                           token=name, position=tok.pos)
        return lambda r, e: r.get(name)

    def args(self) -> list[Expr]:
        self.expect_op("(")
        out: list[Expr] = []
        if not self.is_op(")"):
            out.append(self.expr())
            while self.is_op(","):
                self.next()
                out.append(self.expr())
        self.expect_op(")")
        return out

    def call(self, name: str, tok: Tok) -> Expr:
        if name == "now":
            self.args()
            return lambda r, e: e.now
        if name == "ago":
            (span,) = self._arity(name, self.args(), 1, 1, tok)
            return lambda r, e: _ago(e.now, span(r, e))
        if name in _AGGREGATES:
            raise KqlError(f"'{name}' is an aggregation: only valid in summarize", code="InvalidQuery",
                           token=name, position=tok.pos)
        if name not in _SCALARS:
            raise KqlError(f"Unknown function: '{name}'.", code="UnknownFunction", token=name, position=tok.pos)
        lo, hi, fn = _SCALARS[name]
        args = self._arity(name, self.args(), lo, hi, tok)
        return lambda r, e: fn(*(a(r, e) for a in args))

    @staticmethod
    def _arity(name: str, args: list[Expr], lo: int, hi: int, tok: Tok) -> list[Expr]:
        if not lo <= len(args) <= hi:
            raise KqlError(f"function '{name}' expects {lo}..{hi} arguments, got {len(args)}",
                           code="InvalidQuery", token=name, position=tok.pos)
        return args

    # -- tabular operators --------------------------------------------------------------------
    def query(self, tables: dict[str, list[str]]) -> tuple[str, list[Callable[[list[Row], Env], list[Row]]],
                                                           list[str], bool]:
        tok = self.tok
        if tok.kind != "ident":
            raise self.fail("a table name")
        table = self.next().text.lower()
        if table not in tables:
            raise KqlError(f"table '{tok.text}' is not served by this Resource Graph (see SUPPORTED)",
                           code="InvalidQuery", token=tok.text, position=tok.pos)
        self.columns = list(tables[table])
        stages: list[Callable[[list[Row], Env], list[Row]]] = []
        limited = False
        while self.tok.kind != "eof":
            self.expect_op("|")
            op_tok = self.tok
            if op_tok.kind != "ident":
                raise self.fail("a tabular operator")
            op = self.next().text
            if op == "where":
                stages.append(self.op_where())
            elif op == "extend":
                stages.append(self.op_extend())
            elif op == "project":
                stages.append(self.op_project())
            elif op == "project-away":
                stages.append(self.op_project_away())
            elif op == "summarize":
                stages.append(self.op_summarize())
            elif op == "count":
                self.columns = ["Count"]
                stages.append(lambda rows, e: [{"Count": len(rows)}])
            elif op == "distinct":
                stages.append(self.op_distinct())
            elif op in ("order", "sort"):
                self.expect_word("by")
                stages.append(self.op_order())
            elif op == "top":
                n = self.number()
                self.expect_word("by")
                order = self.op_order()
                stages.append(lambda rows, e, o=order, k=n: o(rows, e)[:k])  # type: ignore[misc]
                limited = True
            elif op in ("take", "limit"):
                n = self.number()
                stages.append(lambda rows, e, k=n: rows[:k])  # type: ignore[misc]
                limited = True
            else:
                raise KqlError(f"operator '{op}' is not supported", token=op, position=op_tok.pos)
        return table, stages, list(self.columns), limited

    def number(self) -> int:
        if self.tok.kind != "num" or not isinstance(self.tok.value, int):
            raise self.fail("a whole number")
        return int(self.next().value)

    def op_where(self) -> Callable[[list[Row], Env], list[Row]]:
        pred = self.expr()
        return lambda rows, e: [r for r in rows if _tobool(pred(r, e))]

    def _assignments(self, *, allow_bare: bool) -> list[tuple[str, Expr]]:
        items: list[tuple[str, Expr]] = []
        while True:
            start = self.tok
            if (start.kind == "ident" or self.is_op("[")) and self._assign_ahead():
                name = self.ident()
                self.expect_op("=")
                items.append((name, self.expr()))
            elif allow_bare:
                before = self.i
                value = self.expr()
                used = self.toks[before:self.i]
                if (len(used) > 3 and used[0].kind == "ident" and used[1].text == "(" and used[-1].text == ")"
                        and used[0].text in _SCALARS):
                    used = used[2:-1]  # ``tostring(properties.a.b)`` is named after its path, as Kusto does
                is_path = all(t.kind == "ident" or t.text == "." for t in used)
                name = "_".join(t.text for t in used if t.kind == "ident") if is_path else f"Column{len(items) + 1}"
                items.append((name, value))
            else:
                raise self.fail("'name = expression'")
            if not self.is_op(","):
                return items
            self.next()

    def _assign_ahead(self) -> bool:
        if self.is_op("["):
            return self.peek(3).kind == "op" and self.peek(3).text == "="
        return self.peek().kind == "op" and self.peek().text == "="

    def op_extend(self) -> Callable[[list[Row], Env], list[Row]]:
        items = self._assignments(allow_bare=False)
        for name, _ in items:
            if name not in self.columns:
                self.columns.append(name)

        def run(rows: list[Row], e: Env) -> list[Row]:
            out = []
            for r in rows:
                new = dict(r)
                for name, fn in items:
                    new[name] = fn(new, e)
                out.append(new)
            return out

        return run

    def op_project(self) -> Callable[[list[Row], Env], list[Row]]:
        items = self._assignments(allow_bare=True)
        self.columns = [name for name, _ in items]
        return lambda rows, e: [{name: fn(r, e) for name, fn in items} for r in rows]

    def _known_columns(self) -> list[str]:
        """``a, b, c``: column names, each of which must exist (ARG's InvalidQuery otherwise)."""
        names = [self.ident()]
        while self.is_op(","):
            self.next()
            names.append(self.ident())
        for n in names:
            if n not in self.columns:
                raise KqlError(f"Failed to resolve column '{n}'", code="InvalidQuery", token=n)
        return names

    def op_project_away(self) -> Callable[[list[Row], Env], list[Row]]:
        names = self._known_columns()
        self.columns = [c for c in self.columns if c not in names]
        keep = list(self.columns)
        return lambda rows, e: [{c: r.get(c) for c in keep} for r in rows]

    def op_distinct(self) -> Callable[[list[Row], Env], list[Row]]:
        names = self._known_columns()
        self.columns = names

        def run(rows: list[Row], e: Env) -> list[Row]:
            seen: dict[str, Row] = {}
            for r in rows:
                row = {n: r.get(n) for n in names}
                seen.setdefault(json.dumps(to_json_value(row), sort_keys=True), row)
            return list(seen.values())

        return run

    def op_summarize(self) -> Callable[[list[Row], Env], list[Row]]:
        aggs: list[tuple[str, str, Expr | None]] = []
        while True:
            name: str | None = None
            if self.tok.kind == "ident" and self.peek().text == "=" and self.peek().kind == "op":
                name = self.next().text
                self.next()
            tok = self.tok
            if tok.kind != "ident" or tok.text not in _AGGREGATES:
                raise KqlError(f"Unknown aggregation: '{tok.text}'", code="UnknownFunction", token=tok.text,
                               position=tok.pos)
            fn = self.next().text
            args = self.args()
            if fn == "count":
                self._arity(fn, args, 0, 0, tok)
                arg = None
            else:
                arg = self._arity(fn, args, 1, 1, tok)[0]
            default = {"count": "count_", "countif": "countif_", "dcount": "dcount_"}.get(fn, f"{fn}_")
            aggs.append((name or default, fn, arg))
            if not self.is_op(","):
                break
            self.next()
        keys: list[tuple[str, Expr]] = []
        if self.is_word("by"):
            self.next()
            keys = self._assignments(allow_bare=True)
        self.columns = [k for k, _ in keys] + [a for a, _, _ in aggs]

        def run(rows: list[Row], e: Env) -> list[Row]:
            groups: dict[str, tuple[Row, list[Row]]] = {}
            for r in rows:
                key_row = {k: fn(r, e) for k, fn in keys}
                key = json.dumps(to_json_value(key_row), sort_keys=True)
                groups.setdefault(key, (key_row, []))[1].append(r)
            if not keys and not groups:
                groups[""] = ({}, [])
            out = []
            for key_row, members in groups.values():
                row = dict(key_row)
                for name, fn, arg in aggs:
                    row[name] = _aggregate(fn, arg, members, e)
                out.append(row)
            return out

        return run

    def op_order(self) -> Callable[[list[Row], Env], list[Row]]:
        keys: list[tuple[Expr, bool]] = []
        while True:
            key = self.expr()
            desc = True  # KQL sorts descending by default
            if self.is_word("asc", "desc"):
                desc = self.next().text == "desc"
            if self.is_word("nulls"):
                raise KqlError("'nulls first/last' is not supported", token="nulls", position=self.tok.pos)
            keys.append((key, desc))
            if not self.is_op(","):
                break
            self.next()

        def run(rows: list[Row], e: Env) -> list[Row]:
            out = list(rows)
            for key, desc in reversed(keys):
                present = [r for r in out if key(r, e) is not None]
                missing = [r for r in out if key(r, e) is None]
                present.sort(key=lambda r, k=key: _sort_key(k(r, e)), reverse=desc)  # type: ignore[misc]
                out = present + missing if desc else missing + present  # KQL: nulls last / first
            return out

        return run


def _sort_key(value: Any) -> Any:
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, value, "")
    if isinstance(value, datetime):
        return (1, value.timestamp(), "")
    return (2, 0, _tostring(value))


def _aggregate(fn: str, arg: Expr | None, rows: list[Row], e: Env) -> Any:
    if fn == "count":
        return len(rows)
    assert arg is not None
    values = [arg(r, e) for r in rows]
    if fn == "countif":
        return sum(1 for v in values if _tobool(v))
    present = [v for v in values if v is not None]
    if fn == "dcount":
        return len({json.dumps(to_json_value(v), sort_keys=True) for v in present})
    if fn == "make_set":
        out: list[Any] = []
        for v in present:
            if v not in out:
                out.append(v)
        return out
    if not present:
        return None
    if fn == "sum":
        return sum(v for v in present if isinstance(v, (int, float)))
    try:
        return max(present) if fn == "max" else min(present)
    except TypeError:
        return None


def _member(value: Any, key: Any) -> Any:
    if isinstance(value, str):
        value = _parse_json(value) if value[:1] in "[{" else value
    if isinstance(value, dict) and isinstance(key, str):
        return value.get(key)
    if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
        return value[key] if -len(value) <= key < len(value) else None
    return None


def _bool_op(left: Expr, right: Expr, *, either: bool) -> Expr:
    if either:
        return lambda r, e: bool(_tobool(left(r, e))) or bool(_tobool(right(r, e)))
    return lambda r, e: bool(_tobool(left(r, e))) and bool(_tobool(right(r, e)))


def _binary(left: Expr, right: Expr, fn: Callable[[Any, Any], Any]) -> Expr:
    return lambda r, e: fn(left(r, e), right(r, e))


def _unary(inner: Expr, fn: Callable[[Any], Any]) -> Expr:
    return lambda r, e: fn(inner(r, e))


def _negated(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, b: not fn(a, b)


class _Const:
    """A literal: evaluates to ``value`` (recognisable, so ``in`` / ``in~`` over literals can use a set)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, r: Row, e: Env) -> Any:
        return self.value


def _const(value: Any) -> Expr:
    return _Const(value)


def _ago(now: datetime, span: Any) -> datetime | None:
    return now - span if isinstance(span, timedelta) else None


def _compare(op: str, left: Expr, right: Expr) -> Expr:
    if op == "==":
        return lambda r, e: _eq(left(r, e), right(r, e))
    if op == "!=":
        return _binary(left, right, lambda a, b: a is not None and b is not None and not _eq(a, b))
    if op == "=~":
        return lambda r, e: _eq_ci(left(r, e), right(r, e))
    if op == "!~":
        return _binary(left, right, lambda a, b: a is not None and b is not None and not _eq_ci(a, b))
    return lambda r, e: _order(left(r, e), right(r, e), op)


def _in(left: Expr, items: Sequence[Expr], ci: bool, neg: bool) -> Expr:
    if items and all(isinstance(i, _Const) for i in items):
        values = [i.value for i in items if isinstance(i, _Const)]
        if ci:
            # ``in~`` over literals: the same test as ``=~`` against each (string forms, lower-cased)
            lowered = frozenset(_tostring(v).lower() for v in values if v is not None)

            def run_ci(r: Row, e: Env) -> bool:
                value = left(r, e)
                return (value is not None and _tostring(value).lower() in lowered) != neg

            return run_ci
        if all(isinstance(v, str) for v in values):
            exact = frozenset(values)

            def run_str(r: Row, e: Env) -> bool:
                value = left(r, e)
                if value is None:
                    return neg
                found = value in exact if isinstance(value, str) else any(_eq(value, c) for c in exact)
                return found != neg

            return run_str

    def run(r: Row, e: Env) -> bool:
        value = left(r, e)
        candidates: list[Any] = []
        for item in items:
            v = item(r, e)
            candidates.extend(v if isinstance(v, list) else [v])
        test = _eq_ci if ci else _eq
        found = value is not None and any(test(value, c) for c in candidates)
        return not found if neg else found

    return run


def _arith(op: str, left: Expr, right: Expr) -> Expr:
    def run(r: Row, e: Env) -> Any:
        a, b = left(r, e), right(r, e)
        if a is None or b is None:
            return None
        try:
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return a // b if isinstance(a, int) and isinstance(b, int) else a / b
            return a % b
        except (TypeError, ZeroDivisionError):
            return None

    return run


@dataclass
class Query:
    """A compiled query: ``run(rows_by_table, now)`` → result rows; ``columns`` its output schema."""

    table: str
    stages: list[Callable[[list[Row], Env], list[Row]]]
    columns: list[str]
    limited: bool  # take/limit/top: ARG sends no $skipToken for such queries

    def run(self, rows: list[Row], now: datetime) -> list[Row]:
        env = Env(now=now)
        out = list(rows)
        for stage in self.stages:
            out = stage(out, env)
        return out


def compile_query(text: str, tables: dict[str, list[str]], *, now: datetime | None = None) -> Query:
    """Parse ``text`` against ``tables`` (lower-case name → column names); raises :class:`KqlError`."""
    if not isinstance(text, str) or not text.strip():
        raise KqlError("the query is empty", code="InvalidQuery")
    parser = _Parser(text, now or datetime.now(UTC))
    table, stages, columns, limited = parser.query(tables)
    return Query(table=table, stages=stages, columns=columns, limited=limited)
