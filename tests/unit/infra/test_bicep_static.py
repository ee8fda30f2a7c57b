"""Light static checks of infra/*.bicep (Bicep cannot be compiled here).

Each test names a mistake that would make `azd provision` fail or silently misconfigure:
modules called with undeclared or missing parameters, outputs read that do not exist,
loadJsonContent paths or JSON fields that do not exist, parameters declared and never used.
"""

from __future__ import annotations

import re

import pytest

from tests.unit.infra.bicep_static import BicepFile, code_only, json_path_exists, load_json, strip_comments
from tests.unit.infra.conftest import INFRA

pytestmark = pytest.mark.unit


def test_the_expected_bicep_files_exist(bicep_files: dict[str, BicepFile]) -> None:
    assert "main.bicep" in bicep_files
    assert bicep_files["main.bicep"].target_scope == "resourceGroup"
    assert len(bicep_files) >= 10, sorted(bicep_files)


def test_every_module_path_exists_and_is_a_bicep_file(bicep_files: dict[str, BicepFile]) -> None:
    missing = [
        f"{name}: module {call.symbol} -> {call.path}"
        for name, bicep in bicep_files.items()
        for call in bicep.modules
        if not call.path.is_file()
    ]
    assert missing == []


def test_modules_get_only_declared_params_and_all_required_ones(bicep_files: dict[str, BicepFile]) -> None:
    by_path = {b.path.resolve(): b for b in bicep_files.values()}
    problems: list[str] = []
    for name, bicep in bicep_files.items():
        for call in bicep.modules:
            target = by_path[call.path]
            undeclared = set(call.params) - set(target.params)
            missing = target.required_params - set(call.params)
            if undeclared:
                problems.append(f"{name}: {call.symbol} passes undeclared {sorted(undeclared)}")
            if missing:
                problems.append(f"{name}: {call.symbol} misses required {sorted(missing)}")
    assert problems == []


def test_module_outputs_read_exist(bicep_files: dict[str, BicepFile]) -> None:
    by_path = {b.path.resolve(): b for b in bicep_files.values()}
    problems: list[str] = []
    for name, bicep in bicep_files.items():
        modules = {call.symbol: by_path[call.path] for call in bicep.modules}
        for symbol, output in bicep.output_refs:
            if symbol not in modules:
                problems.append(f"{name}: {symbol}.outputs.{output} reads an undeclared module")
            elif output not in modules[symbol].outputs:
                problems.append(f"{name}: {symbol}.outputs.{output} is not an output of {modules[symbol].path.name}")
    assert problems == []


def test_every_load_json_content_path_exists(bicep_files: dict[str, BicepFile]) -> None:
    loads = [(name, path) for name, bicep in bicep_files.items() for path in bicep.json_loads]
    assert loads, "no loadJsonContent at all: the JSON data the tests check would not be deployed"
    assert [f"{name}: {path}" for name, path in loads if not path.is_file()] == []


def test_json_fields_read_by_bicep_exist_in_the_json(bicep_files: dict[str, BicepFile]) -> None:
    problems: list[str] = []
    for name, bicep in bicep_files.items():
        for var, path in bicep.json_vars.items():
            data = load_json(path)
            for ref in sorted(bicep.json_field_refs(var)):
                if not json_path_exists(data, ref):
                    problems.append(f"{name}: {var}.{ref} not in {path.name}")
    assert problems == []


def test_the_data_files_are_loaded_by_some_bicep(bicep_files: dict[str, BicepFile]) -> None:
    loaded = {path.name for bicep in bicep_files.values() for path in bicep.json_loads}
    for data in ("app-settings.json", "role-actions.json", "event-subscriptions.json", "builtin-roles.json"):
        assert data in loaded, f"infra/{data} is checked by tests but no Bicep loads it"


def _uses(bicep: BicepFile, identifier: str) -> int:
    """Whole-word uses of ``identifier``, not counting object keys (``name:`` at line start)."""
    count = 0
    for line in code_only(bicep.text).splitlines():
        for found in re.finditer(rf"(?<![\w.']){re.escape(identifier)}\b", line):
            is_key = line[: found.start()].strip() == "" and line[found.end():].lstrip().startswith(":")
            if not is_key:
                count += 1
    return count


def test_every_param_and_var_is_used(bicep_files: dict[str, BicepFile]) -> None:
    unused = [
        f"{name}: {kind} {ident}"
        for name, bicep in bicep_files.items()
        for kind, idents in (("param", bicep.params), ("var", bicep.variables))
        for ident in idents
        if _uses(bicep, ident) < 2  # the declaration itself is one
    ]
    assert unused == []


def test_resources_pin_explicit_api_versions(bicep_files: dict[str, BicepFile]) -> None:
    loose = [
        f"{name}: {symbol} {type_}"
        for name, bicep in bicep_files.items()
        for symbol, type_ in bicep.resources.items()
        if not re.fullmatch(r"[\w.]+/[\w/]+@\d{4}-\d{2}-\d{2}(-preview)?", type_)
    ]
    assert loose == []


def test_subscription_scoped_modules_declare_their_target_scope(bicep_files: dict[str, BicepFile]) -> None:
    """A module deployed with ``scope: subscription(...)`` must say ``targetScope = 'subscription'``."""
    by_path = {b.path.resolve(): b for b in bicep_files.values()}
    problems: list[str] = []
    for name, bicep in bicep_files.items():
        for call in bicep.modules:
            decl = re.search(rf"^module\s+{call.symbol}\s+'[^']+'\s*=.*?^\s*scope:\s*(\w+)\(", bicep.text,
                             re.MULTILINE | re.DOTALL)
            body_start = bicep.text.index(f"module {call.symbol} ")
            next_decl = re.search(r"^(module|resource|output|var|param)\s", bicep.text[body_start + 7:], re.MULTILINE)
            end = body_start + 7 + next_decl.start() if next_decl else len(bicep.text)
            scope = re.search(r"^\s*scope:\s*(\w+)\(", bicep.text[body_start:end], re.MULTILINE)
            wanted = scope.group(1) if scope else "resourceGroup"
            if decl is not None and by_path[call.path].target_scope != wanted:
                problems.append(f"{name}: {call.symbol} deployed at {wanted} but {call.path.name} "
                                f"targets {by_path[call.path].target_scope}")
    assert problems == []


def test_comment_stripping_keeps_urls_in_strings() -> None:
    text = "var a = 'https://x' // trailing\n/* block\nmore */var b = 1"
    stripped = strip_comments(text)
    assert "'https://x'" in stripped
    assert "trailing" not in stripped and "block" not in stripped
    assert stripped.count("\n") == text.count("\n")


def test_code_only_blanks_strings_but_keeps_interpolations() -> None:
    code = code_only("x: '${events.functionName}/functions' // c\ny: '../builtin-roles.json'")
    assert "events.functionName" in code
    assert "roles.json" not in code and "functions" not in code


def test_infra_folder_has_no_stray_json(bicep_files: dict[str, BicepFile]) -> None:
    """Every JSON file in infra/ is either loaded by Bicep or the azd parameters file."""
    loaded = {path.resolve() for bicep in bicep_files.values() for path in bicep.json_loads}
    stray = [p.name for p in INFRA.rglob("*.json") if p.resolve() not in loaded and p.name != "main.parameters.json"]
    assert stray == []
