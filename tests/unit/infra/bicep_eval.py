"""A small evaluator for the Bicep expressions main.bicep computes its decisions with.

Why: no Bicep compiler is available here, yet the decisions that matter for safety are
expressions (which rings' maintenance configurations a deployment declares, whether App Service
authentication is required, which dynamic scopes are declared and under which name). Reading
their text proves little; evaluating them for the parameters a deployment really passes proves
what the deployment would do. This evaluates ``var`` declarations of a Bicep file for given
parameter values, with the semantics of the Bicep docs for the subset used.

SUPPORTED: literals (single-quoted strings with ``${}`` interpolation, ints, ``true``/``false``/
``null``, multi-line object and array literals), ``param`` defaults, ``var`` references,
``a.b`` / ``a.?b`` / ``a[i]`` / ``a[?i]``, ``!`` ``&&`` ``||`` ``==`` ``!=`` ``<`` ``>`` ``<=``
``>=`` ``??`` ``c ? x : y`` (lazy: a ``fail()`` in the branch not taken is not evaluated), lambdas
``x => e`` / ``(x, i) => e``, ``[for x in xs: e]`` / ``[for (x, i) in xs: e]`` (with ``if``), and
the functions in ``FUNCTIONS``. ``fail(msg)`` raises :class:`BicepFail`. ``loadJsonContent`` reads
the file relative to the Bicep file.
LIMITATIONS: no resources, modules or outputs; no ``'''`` strings; unknown functions raise.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEPLOYMENT_CONTEXT", "BicepFail", "Evaluator"]

#: What the deployment functions answer in the evaluated "deployment" (a resource group deployment).
DEPLOYMENT_CONTEXT: dict[str, Any] = {
    "resourceGroup": {"name": "rg-patchrings", "location": "westeurope",
                      "id": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-patchrings"},
    "subscription": {"subscriptionId": "00000000-0000-0000-0000-000000000001",
                     "id": "/subscriptions/00000000-0000-0000-0000-000000000001"},
    "tenant": {"tenantId": "11111111-1111-1111-1111-111111111111"},
    "environment": {"name": "AzureCloud", "suffixes": {"storage": "core.windows.net"},
                    "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"}},
}


class BicepFail(Exception):
    """``fail(message)`` was evaluated: the deployment would stop with ``message``."""


_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+|//[^\n]*|/\*.*?\*/)
      |(?P<nl>\n)
      |(?P<str>'(?:[^'\\]|\\.)*')
      |(?P<num>\d+)
      |(?P<op>=>|\.\?|\[\?|\?\?|&&|\|\||==|!=|<=|>=|[-+*/%<>!?:.,()\[\]{}])
      |(?P<id>[A-Za-z_]\w*)""",
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Tok:
    kind: str
    text: str


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SyntaxError(f"cannot tokenize at {text[pos:pos + 30]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Tok(kind, m.group()))
    out.append(Tok("eof", ""))
    return out


@dataclass
class Lambda:
    names: list[str]
    body: Any
    scope: dict[str, Any]


class Parser:
    """Pratt parser producing tuples: ('lit', v), ('id', n), ('str', parts), ('call', n, args), ..."""

    def __init__(self, tokens: list[Tok]):
        self.toks = tokens
        self.i = 0

    def peek(self, skip_nl: bool = True) -> Tok:
        j = self.i
        while skip_nl and self.toks[j].kind == "nl":
            j += 1
        return self.toks[j]

    def next(self, skip_nl: bool = True) -> Tok:
        while skip_nl and self.toks[self.i].kind == "nl":
            self.i += 1
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.next()
        if tok.text != text:
            raise SyntaxError(f"expected {text!r}, got {tok.text!r}")

    # precedence climbing: ?: < ?? < || < && < ==,!= < <,> < unary < postfix
    def expr(self) -> Any:
        cond = self.coalesce()
        if self.peek().text == "?":
            self.next()
            yes = self.expr()
            self.expect(":")
            no = self.expr()
            return ("cond", cond, yes, no)
        return cond

    def coalesce(self) -> Any:
        left = self.binary(0)
        while self.peek().text == "??":
            self.next()
            left = ("??", left, self.binary(0))
        return left

    LEVELS = (("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Any:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek().text in self.LEVELS[level]:
            op = self.next().text
            left = (op, left, self.binary(level + 1))
        return left

    def unary(self) -> Any:
        if self.peek().text == "!":
            self.next()
            return ("!", self.unary())
        if self.peek().text == "-":
            self.next()
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Any) -> Any:
        while True:
            tok = self.peek(skip_nl=False)
            if tok.text in (".", ".?"):
                self.next()
                name = self.next().text
                if self.peek(skip_nl=False).text == "(":  # method-style call: a.b() is not used here
                    raise SyntaxError("method calls are not supported")
                node = ("get", node, ("lit", name), tok.text == ".?")
            elif tok.text in ("[", "[?"):
                self.next()
                index = self.expr()
                self.expect("]")
                node = ("get", node, index, tok.text == "[?")
            else:
                return node

    def primary(self) -> Any:
        tok = self.next()
        if tok.kind == "str":
            return ("str", _interpolation_parts(tok.text[1:-1]))
        if tok.kind == "num":
            return ("lit", int(tok.text))
        if tok.text == "(":
            # a lambda's parameter list, or a parenthesised expression
            save = self.i
            names = []
            while self.peek().kind == "id":
                names.append(self.next().text)
                if self.peek().text == ",":
                    self.next()
            if self.peek().text == ")" and names:
                self.next()
                if self.peek().text == "=>":
                    self.next()
                    return ("lambda", names, self.expr())
            self.i = save
            inner = self.expr()
            self.expect(")")
            return inner
        if tok.text == "{":
            return self.object_literal()
        if tok.text == "[":
            if self.peek().text == "for":
                return self.for_expr()
            return self.array_literal()
        if tok.kind == "id":
            if tok.text in ("true", "false"):
                return ("lit", tok.text == "true")
            if tok.text == "null":
                return ("lit", None)
            if self.peek(skip_nl=False).text == "=>":
                self.next()
                return ("lambda", [tok.text], self.expr())
            if self.peek(skip_nl=False).text == "(":
                self.next()
                args = []
                while self.peek().text != ")":
                    args.append(self.expr())
                    if self.peek().text == ",":
                        self.next()
                self.expect(")")
                name = tok.text
                if self.peek(skip_nl=False).text == ".":  # sys.fail(...) style is not used
                    pass
                return ("call", name, args)
            return ("id", tok.text)
        raise SyntaxError(f"unexpected {tok.text!r}")

    def object_literal(self) -> Any:
        items = []
        while self.peek().text != "}":
            key_tok = self.next()
            key = key_tok.text[1:-1] if key_tok.kind == "str" else key_tok.text
            self.expect(":")
            items.append((key, self.expr()))
            if self.peek().text == ",":
                self.next()
        self.expect("}")
        return ("object", items)

    def array_literal(self) -> Any:
        items = []
        while self.peek().text != "]":
            items.append(self.expr())
            if self.peek().text == ",":
                self.next()
        self.expect("]")
        return ("array", items)

    def for_expr(self) -> Any:
        self.expect("for")
        if self.peek().text == "(":
            self.next()
            item = self.next().text
            self.expect(",")
            index: str | None = self.next().text
            self.expect(")")
        else:
            item, index = self.next().text, None
        self.expect("in")
        source = self.expr()
        self.expect(":")
        cond = None
        if self.peek().text == "if":
            self.next()
            self.expect("(")
            cond = self.expr()
            self.expect(")")
        body = self.expr()
        self.expect("]")
        return ("for", item, index, source, cond, body)


def _interpolation_parts(raw: str) -> list[Any]:
    """``'a${x}b'`` → ['a', <expr x>, 'b'] (escapes \\' \\\\ \\n \\$ resolved)."""
    parts: list[Any] = []
    buf = ""
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            buf += {"n": "\n", "t": "\t", "r": "\r"}.get(raw[i + 1], raw[i + 1])
            i += 2
            continue
        if raw.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(raw[j], 0)
                j += 1
            if buf:
                parts.append(buf)
                buf = ""
            parts.append(Parser(tokenize(raw[i + 2 : j - 1])).expr())
            i = j
            continue
        buf += ch
        i += 1
    if buf or not parts:
        parts.append(buf)
    return parts


def _bicep_str(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "" if value is None else str(value)


def _union(*values: Any) -> Any:
    if all(isinstance(v, dict) for v in values):
        out: dict[str, Any] = {}
        for value in values:
            for key, item in value.items():
                if isinstance(item, dict) and isinstance(out.get(key), dict):
                    out[key] = _union(out[key], item)
                else:
                    out[key] = item
        return out
    merged: list[Any] = []
    for value in values:
        for item in value:
            if item not in merged:
                merged.append(item)
    return merged


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, dict):
        return any(str(k).lower() == str(item).lower() for k in container)
    return item in container


class Evaluator:
    """Evaluates the ``var``s of one Bicep file for given parameter values."""

    def __init__(self, path: Path, params: Mapping[str, Any] | None = None, *,
                 modules: Mapping[str, Any] | None = None, files: Mapping[str, Any] | None = None):
        """``modules``: symbol -> ``{"outputs": {...}}`` for module references; ``files``: a
        ``loadJsonContent`` path -> the data to return instead of reading the file."""
        self.path = path
        self.modules = dict(modules or {})
        self.files = dict(files or {})
        text = path.read_text(encoding="utf-8")
        self.decls: dict[str, Any] = {}
        self.param_defaults: dict[str, Any] = {}
        for kind, name, body in _declarations(text):
            tree = Parser(tokenize(body)).expr() if body is not None else None
            (self.decls if kind == "var" else self.param_defaults)[name] = tree
        self.params = dict(params or {})
        self.cache: dict[str, Any] = {}

    def var(self, name: str) -> Any:
        if name not in self.cache:
            self.cache[name] = self.eval(self.decls[name], {})
        return self.cache[name]

    def param(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        default = self.param_defaults.get(name)
        if default is None:
            raise KeyError(f"parameter {name} has no value and no default")
        return self.eval(default, {})

    def eval(self, node: Any, scope: dict[str, Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "str":
            return "".join(p if isinstance(p, str) else _bicep_str(self.eval(p, scope)) for p in node[1])
        if kind == "id":
            name = node[1]
            if name in scope:
                return scope[name]
            if name in self.decls:
                return self.var(name)
            if name in self.param_defaults:
                return self.param(name)
            if name in self.modules:
                return self.modules[name]
            raise NameError(name)
        if kind == "object":
            return {key: self.eval(value, scope) for key, value in node[1]}
        if kind == "array":
            return [self.eval(item, scope) for item in node[1]]
        if kind == "get":
            base = self.eval(node[1], scope)
            key = self.eval(node[2], scope)
            safe = node[3]
            if base is None:
                if safe:
                    return None
                raise TypeError(f"access of {key!r} on null")
            if isinstance(base, dict):
                for k, v in base.items():  # property names are case-insensitive in ARM
                    if str(k).lower() == str(key).lower():
                        return v
                if safe:
                    return None
                raise KeyError(key)
            if isinstance(base, list):
                if 0 <= int(key) < len(base):
                    return base[int(key)]
                if safe:
                    return None
                raise IndexError(key)
            raise TypeError(f"cannot access {key!r} on {base!r}")
        if kind == "cond":
            return self.eval(node[2] if self.eval(node[1], scope) else node[3], scope)
        if kind == "??":
            left = self.eval(node[1], scope)
            return left if left is not None else self.eval(node[2], scope)
        if kind == "&&":
            return bool(self.eval(node[1], scope)) and bool(self.eval(node[2], scope))
        if kind == "||":
            return bool(self.eval(node[1], scope)) or bool(self.eval(node[2], scope))
        if kind == "!":
            return not self.eval(node[1], scope)
        if kind == "neg":
            return -self.eval(node[1], scope)
        if kind in ("==", "!="):
            a, b = self.eval(node[1], scope), self.eval(node[2], scope)
            return (a == b) if kind == "==" else (a != b)  # Bicep == is case-sensitive (=~ is not)
        if kind in ("<", ">", "<=", ">=", "+", "-", "*", "/", "%"):
            a, b = self.eval(node[1], scope), self.eval(node[2], scope)
            ops: dict[str, Callable[[Any, Any], Any]] = {
                "<": lambda x, y: x < y, ">": lambda x, y: x > y, "<=": lambda x, y: x <= y,
                ">=": lambda x, y: x >= y, "+": lambda x, y: x + y, "-": lambda x, y: x - y,
                "*": lambda x, y: x * y, "/": lambda x, y: x // y, "%": lambda x, y: x % y}
            return ops[kind](a, b)
        if kind == "lambda":
            return Lambda(node[1], node[2], scope)
        if kind == "for":
            _, item, index, source, cond, body = node
            out = []
            for i, value in enumerate(self.eval(source, scope)):
                inner = {**scope, item: value, **({index: i} if index else {})}
                if cond is not None and not self.eval(cond, inner):
                    continue
                out.append(self.eval(body, inner))
            return out
        if kind == "call":
            return self.call(node[1], node[2], scope)
        raise ValueError(kind)

    def apply(self, fn: Lambda, *args: Any) -> Any:
        return self.eval(fn.body, {**fn.scope, **dict(zip(fn.names, args, strict=False))})

    def call(self, name: str, args: list[Any], scope: dict[str, Any]) -> Any:
        if name == "fail":
            raise BicepFail(self.eval(args[0], scope))
        values = [self.eval(a, scope) for a in args]
        if name == "loadJsonContent":
            if values[0] in self.files:
                return self.files[values[0]]
            return json.loads((self.path.parent / values[0]).read_text(encoding="utf-8"))
        if name == "empty":
            return values[0] is None or len(values[0]) == 0
        if name == "length":
            return len(values[0])
        if name == "contains":
            return _contains(values[0], values[1])
        if name == "union":
            return _union(*values)
        if name == "concat":
            return "".join(values) if all(isinstance(v, str) for v in values) else [x for v in values for x in v]
        if name == "filter":
            return [x for x in values[0] if self.apply(values[1], x)]
        if name == "map":
            return [self.apply(values[1], x) for x in values[0]]
        if name == "toObject":
            return {self.apply(values[1], x): (self.apply(values[2], x) if len(values) > 2 else x) for x in values[0]}
        if name == "first":
            return values[0][0] if values[0] else None
        if name == "trim":
            return str(values[0]).strip()
        if name == "toLower":
            return str(values[0]).lower()
        if name == "split":
            return str(values[0]).split(values[1])
        if name == "join":
            return values[1].join(values[0])
        if name == "take":
            return values[0][: values[1]]
        if name == "any":
            return values[0]
        if name == "range":
            return list(range(values[0], values[0] + values[1]))
        if name in DEPLOYMENT_CONTEXT:
            return DEPLOYMENT_CONTEXT[name]
        if name == "uniqueString":
            return hashlib.sha256("|".join(map(str, values)).encode()).hexdigest()[:13]
        if name == "resourceId":
            *scopes, type_, res = values
            group = scopes[-1] if scopes else DEPLOYMENT_CONTEXT["resourceGroup"]["name"]
            sub = scopes[0] if len(scopes) > 1 else DEPLOYMENT_CONTEXT["subscription"]["subscriptionId"]
            return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{type_}/{res}"
        if name == "items":
            return [{"key": k, "value": v} for k, v in sorted(values[0].items())]
        raise NotImplementedError(f"function {name}() is not supported by the test evaluator")


def _declarations(text: str) -> list[tuple[str, str, str | None]]:
    """``(kind, name, expression text)`` of each top-level ``var`` and ``param`` (default or None)."""
    out: list[tuple[str, str, str | None]] = []
    # Re-scan the text for declaration starts at line beginnings, then cut each expression by
    # bracket depth until a newline at depth 0.
    for m in re.finditer(r"^(var|param)\s+(\w+)(.*)$", text, re.MULTILINE):
        kind, name = m.group(1), m.group(2)
        start = m.start(3)
        if kind == "param":
            eq = _find_assign(text, start)
            if eq is None:
                out.append((kind, name, None))
                continue
            start = eq
        else:
            start = text.index("=", start) + 1
        out.append((kind, name, _expression_text(text, start)))
    return out


def _find_assign(text: str, start: int) -> int | None:
    line_end = text.find("\n", start)
    line = text[start:line_end if line_end >= 0 else len(text)]
    code = re.sub(r"'(?:[^'\\]|\\.)*'", lambda s: " " * len(s.group()), line)
    pos = code.find("=")
    return None if pos < 0 else start + pos + 1


def _expression_text(text: str, start: int) -> str:
    depth = 0
    i = start
    in_str = False
    while i < len(text):
        ch = text[i]
        if in_str:
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                in_str = False
        elif ch == "'":
            in_str = True
        elif text.startswith("//", i):
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "\n" and depth == 0:
            # a line ending in an operator continues the expression
            before = text[start:i].rstrip()
            if not before.endswith(("?", ":", "&&", "||", "??", "=", ",")):
                return text[start:i]
        i += 1
    return text[start:]
