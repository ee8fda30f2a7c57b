"""Orchestrators are deterministic (issue 10, "Guards as code"): an AST walk of orchestrators/.

An orchestrator function is replayed from its history many times; anything it reads that is not in
the history (a clock, a random number, the environment, a file, the network) or anything it does
twice on replay (a log line, a sleep) breaks the Durable discipline. The Durable context gives the
deterministic replacements: ``context.current_utc_datetime``, ``context.new_uuid()``,
``context.create_timer(...)``, activities for all I/O, and ``context.is_replaying`` for logs.

The checker resolves each module's imports (``from datetime import datetime as dt`` still
resolves ``dt.now`` to ``datetime.datetime.now``) and refuses:

* the clock: ``datetime.now/utcnow/today``, ``date.today``, ``time.time/monotonic/perf_counter``
  (and their ``_ns`` forms), ``time.sleep``, ``asyncio.sleep``;
* randomness: ``uuid.uuid1/uuid4``, anything from ``random`` or ``secrets``;
* the environment: ``os.environ``, ``os.getenv`` (and ``putenv``/``unsetenv``);
* I/O: the ``open`` builtin, ``io.open``, and importing a network or process module
  (``requests``, ``aiohttp``, ``socket``, ``httpx``, ``urllib.request``, ``http.client``,
  ``subprocess``);
* ``print`` and logging calls that are not guarded by replay: a call to ``debug/info/warning/
  error/exception/critical/log`` on a logger (a name bound to ``logging.getLogger(...)``, the
  ``logging`` module itself, or any receiver whose name contains ``log``) must sit in the body of
  ``if not <x>.is_replaying:`` or after an early ``if <x>.is_replaying: return`` in the same
  function. A helper that does that itself (``Rollout.info``, or a ``log_if_not_replaying``) is
  then the way to log, and calls to it are fine.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ORCHESTRATORS = REPO / "orchestrators"

# Fully qualified names refused wherever they are referenced (called or not).
FORBIDDEN_NAMES = {
    "datetime.datetime.now": "the clock: use context.current_utc_datetime",
    "datetime.datetime.utcnow": "the clock: use context.current_utc_datetime",
    "datetime.datetime.today": "the clock: use context.current_utc_datetime",
    "datetime.date.today": "the clock: use context.current_utc_datetime",
    "time.time": "the clock: use context.current_utc_datetime",
    "time.time_ns": "the clock: use context.current_utc_datetime",
    "time.monotonic": "the clock: use context.current_utc_datetime",
    "time.monotonic_ns": "the clock: use context.current_utc_datetime",
    "time.perf_counter": "the clock: use context.current_utc_datetime",
    "time.perf_counter_ns": "the clock: use context.current_utc_datetime",
    "time.sleep": "a sleep: use context.create_timer",
    "asyncio.sleep": "a sleep: use context.create_timer",
    "uuid.uuid1": "a random id: use context.new_uuid()",
    "uuid.uuid4": "a random id: use context.new_uuid()",
    "os.environ": "the environment: settings are read by activities",
    "os.getenv": "the environment: settings are read by activities",
    "os.putenv": "the environment: settings are read by activities",
    "os.unsetenv": "the environment: settings are read by activities",
    "io.open": "file I/O: do it in an activity",
    "builtins.open": "file I/O: do it in an activity",
    "builtins.print": "output on every replay: log when not context.is_replaying",
}
# Whole modules refused: any reference to them or to anything in them.
FORBIDDEN_MODULES = {
    "random": "randomness: use context.new_uuid() or pass the value in",
    "secrets": "randomness: use context.new_uuid() or pass the value in",
    "requests": "network I/O: do it in an activity",
    "aiohttp": "network I/O: do it in an activity",
    "httpx": "network I/O: do it in an activity",
    "socket": "network I/O: do it in an activity",
    "urllib.request": "network I/O: do it in an activity",
    "http.client": "network I/O: do it in an activity",
    "subprocess": "a process: do it in an activity",
}
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
BUILTINS = frozenset({"open", "print"})


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what} -- {self.why}"


def _forbidden_module(qualified: str) -> str | None:
    for module, why in FORBIDDEN_MODULES.items():
        if qualified == module or qualified.startswith(module + "."):
            return why
    return None


def _looks_like_a_logger(name: str) -> bool:
    name = name.lower().lstrip("_")
    return name in {"log", "logger", "logging"} or name.endswith(("_log", "_logger"))


def _is_replaying_test(test: ast.expr) -> bool | None:
    """True for ``x.is_replaying``, False for ``not x.is_replaying``, None for anything else."""
    if isinstance(test, ast.Attribute) and test.attr == "is_replaying":
        return True
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _is_replaying_test(test.operand)
        return None if inner is None else not inner
    return None


def _returns_early(stmt: ast.stmt) -> bool:
    """``if x.is_replaying: return`` (or raise / continue) with no else."""
    return (
        isinstance(stmt, ast.If)
        and _is_replaying_test(stmt.test) is True
        and not stmt.orelse
        and bool(stmt.body)
        and isinstance(stmt.body[-1], ast.Return | ast.Raise | ast.Continue)
    )


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.aliases: dict[str, str] = {}  # local name -> fully qualified name
        self.loggers: set[str] = set()  # names bound to logging.getLogger(...)
        self.shadowed_builtins: set[str] = set()
        self.violations: list[Violation] = []
        self._guarded = 0  # depth of "not replaying" guards around the current node

    # -- imports -------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top
            why = _forbidden_module(alias.name)
            if why:
                self._flag(node, f"import {alias.name}", why)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return  # relative imports stay inside the package
        for alias in node.names:
            qualified = f"{node.module}.{alias.name}"
            self.aliases[alias.asname or alias.name] = qualified
            why = _forbidden_module(qualified) or FORBIDDEN_NAMES.get(qualified)
            if why:
                self._flag(node, f"from {node.module} import {alias.name}", why)

    # -- names ---------------------------------------------------------------------------
    def _qualified(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            if node.id in BUILTINS and node.id not in self.shadowed_builtins:
                return f"builtins.{node.id}"
            return None
        if isinstance(node, ast.Attribute):
            base = self._qualified(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def _check_reference(self, node: ast.Name | ast.Attribute) -> None:
        qualified = self._qualified(node)
        if not qualified:
            return
        why = FORBIDDEN_NAMES.get(qualified) or _forbidden_module(qualified)
        if why:
            self._flag(node, qualified, why)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        qualified = self._qualified(node)
        if qualified and (FORBIDDEN_NAMES.get(qualified) or _forbidden_module(qualified)):
            self._check_reference(node)
            return  # report the longest forbidden name once, not each prefix
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and node.id in BUILTINS:
            self.shadowed_builtins.add(node.id)
        elif isinstance(node.ctx, ast.Load):
            self._check_reference(node)

    def visit_arg(self, node: ast.arg) -> None:
        if node.arg in BUILTINS:
            self.shadowed_builtins.add(node.arg)
        if node.annotation:
            self.visit(node.annotation)

    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Call) and self._qualified(node.value.func) == "logging.getLogger":
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.loggers.add(target.id)
        self.generic_visit(node)

    # -- logging -------------------------------------------------------------------------
    def _is_logger(self, receiver: ast.expr) -> bool:
        if isinstance(receiver, ast.Name):
            return (
                receiver.id in self.loggers
                or self.aliases.get(receiver.id) == "logging"
                or _looks_like_a_logger(receiver.id)
            )
        if isinstance(receiver, ast.Attribute):  # self.log, self._logger, context.logger
            return _looks_like_a_logger(receiver.attr)
        if isinstance(receiver, ast.Call):  # logging.getLogger(...).info(...)
            return self._qualified(receiver.func) == "logging.getLogger"
        return False

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr in LOG_METHODS
            and self._is_logger(func.value)
            and not self._guarded
        ):
            why = "a log line on every replay: guard it with `if not context.is_replaying`"
            self._flag(node, ast.unparse(func), why)
        self.generic_visit(node)

    # -- guards --------------------------------------------------------------------------
    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        guard = _is_replaying_test(node.test)
        self._guarded += guard is False
        for stmt in node.body:
            self.visit(stmt)
        self._guarded -= guard is False
        self._guarded += guard is True
        for stmt in node.orelse:
            self.visit(stmt)
        self._guarded -= guard is True

    def _visit_body(self, body: list[ast.stmt]) -> None:
        guarded_from_here = 0
        for stmt in body:
            self.visit(stmt)
            if _returns_early(stmt) and not guarded_from_here:
                guarded_from_here = 1
                self._guarded += 1
        self._guarded -= guarded_from_here

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit(node.args)
        if node.returns:
            self.visit(node.returns)
        outer, self._guarded = self._guarded, 0  # a guard outside does not cover a later call
        self._visit_body(node.body)
        self._guarded = outer

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def _flag(self, node: ast.AST, what: str, why: str) -> None:
        self.violations.append(Violation(self.path, getattr(node, "lineno", 0), what, why))


def check_source(source: str, path: str = "<string>") -> list[Violation]:
    """Every non-deterministic reference in one orchestrator module's source."""
    checker = _Checker(path)
    checker.visit(ast.parse(source, filename=path))
    return sorted(set(checker.violations), key=lambda v: (v.line, v.what))


def orchestrator_files() -> list[Path]:
    return sorted(ORCHESTRATORS.rglob("*.py"))


# -- the guard ------------------------------------------------------------------------------


def test_orchestrators_exist() -> None:
    names = {p.name for p in orchestrator_files()}
    assert {"__init__.py", "rollout.py", "wave.py"} <= names


@pytest.mark.parametrize("path", orchestrator_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_orchestrator_module_is_deterministic(path: Path) -> None:
    violations = check_source(path.read_text(), str(path.relative_to(REPO)))
    assert not violations, "non-deterministic code in an orchestrator module:\n" + "\n".join(map(str, violations))


# -- the checker itself, on planted violations ----------------------------------------------

PLANTED = [
    ("from datetime import datetime\ndef f():\n    return datetime.now()\n", "datetime.datetime.now"),
    ("import datetime\ndef f():\n    return datetime.datetime.utcnow()\n", "datetime.datetime.utcnow"),
    ("from datetime import date\ndef f():\n    return date.today()\n", "datetime.date.today"),
    ("from datetime import datetime as dt\ndef f():\n    return dt.today()\n", "datetime.datetime.today"),
    ("import time\ndef f():\n    return time.time()\n", "time.time"),
    ("import time as t\ndef f():\n    return t.monotonic()\n", "time.monotonic"),
    ("from time import perf_counter\ndef f():\n    return perf_counter()\n", "from time import perf_counter"),
    ("import time\ndef f():\n    time.sleep(1)\n", "time.sleep"),
    ("import asyncio\nasync def f():\n    await asyncio.sleep(1)\n", "asyncio.sleep"),
    ("import uuid\ndef f():\n    return str(uuid.uuid4())\n", "uuid.uuid4"),
    ("from uuid import uuid1\ndef f():\n    return uuid1()\n", "from uuid import uuid1"),
    ("import random\ndef f():\n    return random.random()\n", "import random"),
    ("from random import choice\ndef f(xs):\n    return choice(xs)\n", "from random import choice"),
    ("import os\ndef f():\n    return os.environ['X']\n", "os.environ"),
    ("import os\ndef f():\n    return os.environ.get('X')\n", "os.environ"),
    ("import os\ndef f():\n    return os.getenv('X')\n", "os.getenv"),
    ("from os import environ\ndef f():\n    return environ\n", "from os import environ"),
    ("def f(p):\n    with open(p) as fh:\n        return fh.read()\n", "builtins.open"),
    ("import requests\n", "import requests"),
    ("from aiohttp import ClientSession\n", "from aiohttp import ClientSession"),
    ("import socket\n", "import socket"),
    ("import urllib.request\n", "import urllib.request"),
    ("def f(x):\n    print(x)\n", "builtins.print"),
    (
        "import logging\nlog = logging.getLogger('x')\ndef f(context):\n    log.info('hello')\n",
        "log.info",
    ),
    (
        "import logging\ndef f(context):\n    logging.warning('hello')\n",
        "logging.warning",
    ),
    (
        "import logging\nlogger = logging.getLogger('x')\ndef f(context):\n"
        "    if context.is_replaying:\n        logger.info('inverted guard')\n",
        "logger.info",
    ),
    (
        "import logging\nlog = logging.getLogger('x')\nclass R:\n    def f(self):\n"
        "        if not self.ctx.is_replaying:\n            pass\n        log.error('after the guard')\n",
        "log.error",
    ),
    (
        "import logging\nlog = logging.getLogger('x')\ndef f(context):\n    if not context.is_replaying:\n"
        "        def later():\n            log.info('a guard outside a nested function does not cover it')\n"
        "        return later\n",
        "log.info",
    ),
]


@pytest.mark.parametrize(("source", "what"), PLANTED, ids=[what for _, what in PLANTED])
def test_checker_refuses_a_planted_violation(source: str, what: str) -> None:
    violations = check_source(source)
    assert [v.what for v in violations if v.what == what], f"{what!r} not caught in:\n{source}\ngot {violations}"


ALLOWED = [
    # the Durable replacements
    "def f(context):\n    now = context.current_utc_datetime\n    return now, context.new_uuid()\n",
    "from datetime import datetime, timedelta\ndef f(s):\n    return datetime.fromisoformat(s) + timedelta(hours=1)\n",
    "import uuid\ndef f(name):\n    return uuid.uuid5(uuid.NAMESPACE_URL, name)\n",
    # guarded logs: in the guard, after an early return, through a helper that guards
    "import logging\nlog = logging.getLogger('x')\ndef f(context):\n    if not context.is_replaying:\n"
    "        log.info('ok')\n",
    "import logging\nlog = logging.getLogger('x')\ndef f(context):\n    if context.is_replaying:\n        return\n"
    "    log.info('ok')\n",
    "import logging\nlog = logging.getLogger('x')\ndef f(context):\n    if context.is_replaying:\n        pass\n"
    "    else:\n        log.info('ok')\n",
    "import logging\nlog = logging.getLogger('x')\nclass R:\n    def info(self, text):\n"
    "        if not self.ctx.is_replaying:\n            log.info(text)\n    def g(self):\n        self.info('ok')\n",
    "import logging\nlog = logging.getLogger('x')\ndef log_if_not_replaying(context, text):\n"
    "    if not context.is_replaying:\n        log.warning(text)\n",
    # names that only look alike
    "def f(doc):\n    return doc.get('time'), doc['now']\n",
    "def f(open):\n    return open\n",
    "def f(catalog, dialog):\n    catalog.error('x')\n    return dialog.info()\n",
]


@pytest.mark.parametrize("source", ALLOWED)
def test_checker_allows_deterministic_code(source: str) -> None:
    assert check_source(source) == []
