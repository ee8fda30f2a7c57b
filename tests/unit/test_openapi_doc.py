"""The OpenAPI 3.1 document (``triggers/openapi.json``, served at ``/api/openapi.json``) is valid
and describes exactly the HTTP routes the app registers.

Why: a description that drifts from the app misleads every client generated from it. The
document is validated with openapi-spec-validator (the OpenAPI 3.1 meta-schema plus its semantic
rules: unique operation ids, resolvable ``$ref``s, path parameters declared); its paths and
methods are compared with the routes the Functions worker would index; its error codes with the
``PatchRingsError`` hierarchy. Whether the app's answers match it is the schemathesis run's job
(tests/functional/test_openapi_schemathesis.py).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

import activities
import triggers
from patchrings.errors import PatchRingsError
from tests.unit.orchestrators.test_app_composition import _functions
from triggers import openapi

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DOC = json.loads((REPO / "triggers" / "openapi.json").read_text())
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in DOC["paths"].items()
            for method, op in item.items() if method in METHODS]


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"].startswith("3.1.")
    validate(DOC, cls=OpenAPIV31SpecValidator)  # raises OpenAPIValidationError naming the problem
    errors = list(OpenAPIV31SpecValidator(DOC).iter_errors())
    assert errors == []


def test_docs_copy_is_the_same_document() -> None:
    """docs/openapi.json is a link to the shipped document (one source), never a drifting copy."""
    docs = REPO / "docs" / "openapi.json"
    assert json.loads(docs.read_text()) == DOC
    if docs.is_symlink():
        assert docs.resolve() == (REPO / "triggers" / "openapi.json").resolve()


def test_every_registered_route_is_described_and_nothing_else() -> None:
    registered: dict[str, set[str]] = {}
    for fn in _functions():
        trigger = fn.get_trigger()
        if trigger.get_binding_name() == "httpTrigger":
            if str(trigger.route).startswith("ui"):
                continue  # the operator page (triggers/ui.py): HTML and its same-origin helpers, not the API
            methods = {str(getattr(m, "value", m)).lower() for m in trigger.methods or []}
            registered[f"/api/{trigger.route}"] = methods
    described = {path: {m for m in item if m in METHODS} for path, item in DOC["paths"].items()}
    assert described == registered


def test_every_operation_documents_the_key_and_its_error_bodies() -> None:
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)) == 11
    for path, method, op in operations():
        assert "401" in op["responses"], (method, path)
        assert any(code.startswith("2") for code in op["responses"]), (method, path)
        for status, response in op["responses"].items():
            if "$ref" in response or not status.startswith(("4", "5")):
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["functionKeyHeader"] == {**schemes["functionKeyHeader"], "type": "apiKey", "in": "header",
                                            "name": "x-functions-key"}
    assert schemes["functionKeyQuery"]["in"] == "query" and schemes["functionKeyQuery"]["name"] == "code"
    assert "X-MS-CLIENT-PRINCIPAL" in schemes["appServiceAuthentication"]["description"]


def _all_error_codes() -> set[str]:
    for package in (triggers, activities):
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
    codes: set[str] = set()
    stack: list[type[PatchRingsError]] = [PatchRingsError]
    while stack:
        cls = stack.pop()
        codes.add(cls.code)
        stack.extend(cls.__subclasses__())
    return codes


def test_error_codes_are_the_error_hierarchy() -> None:
    documented = set(DOC["components"]["schemas"]["ErrorBody"]["properties"]["error"]["properties"]["code"]["enum"])
    assert documented == _all_error_codes() | {"InternalError"}  # InternalError: http_io.guarded's 500


def test_path_parameter_patterns_are_the_apis_own() -> None:
    from triggers import http_io

    params = DOC["components"]["parameters"]
    assert params["RolloutId"]["schema"]["pattern"] == http_io._ID.pattern
    assert params["Ring"]["schema"]["pattern"] == http_io._RING.pattern


def test_served_document_names_the_origin_it_was_fetched_from() -> None:
    served = openapi.served_document("https://patchrings.azurewebsites.net/api/openapi.json?code=k")
    assert served["servers"] == [{"url": "https://patchrings.azurewebsites.net", "description": "this Function App"}]
    assert openapi.served_document(None)["servers"] == DOC["servers"]
    assert openapi.document()["servers"] == DOC["servers"]  # the shipped copy is not modified
