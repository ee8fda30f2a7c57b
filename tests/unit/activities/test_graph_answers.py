"""Resource Graph answers that are short or malformed fail closed (issue 11): member lists and
results are denominators, so an answer that is not the whole answer must raise (the caller's
read failed: inconclusive), never pass as fewer rows."""

from __future__ import annotations

from typing import Any

import pytest

from activities.health import check_vm_health_batch_core
from activities.members import resolve_ring_members_core
from activities.resource_graph import _page_of
from patchrings.arm import resource_graph as rg
from patchrings.errors import PatchRingsError, ResourceGraphIncomplete
from tests.unit.activities.graph_fake import FakeGraph
from tests.unit.activities.test_health_graph import cheap, probe_ok
from tests.unit.activities.test_members_graph import RING0, spec, vm

pytestmark = pytest.mark.unit

QUERY = "resources | project id | order by id asc"


def answering(*pages: dict[str, Any]) -> tuple[rg.Send, list[str | None]]:
    """A ``send`` that answers ``pages`` in turn (the last one again when they run out)."""
    tokens: list[str | None] = []

    def send(query: str, subscriptions: list[str], token: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        tokens.append(token)
        return pages[min(len(tokens) - 1, len(pages) - 1)], {}

    return send, tokens


@pytest.mark.parametrize("page", [{}, {"data": None}, {"data": "rows"}, {"totalRecords": 3, "count": 0},
                                  {"data": {"columns": [], "rows": []}}, {"data": [{"id": "a"}, "b"]}])
def test_a_page_without_a_data_list_raises_instead_of_reading_as_no_rows(page: dict[str, Any]) -> None:
    send, _ = answering(page)
    with pytest.raises(ResourceGraphIncomplete) as caught:
        rg.query_all(send, QUERY, ["s"])
    assert isinstance(caught.value, PatchRingsError) and caught.value.code == "ResourceGraphIncomplete"
    assert isinstance(caught.value, RuntimeError)  # every caller that catches a failed read catches it


def test_a_truncated_answer_raises() -> None:
    send, _ = answering({"totalRecords": 2500, "count": 1, "resultTruncated": "true", "data": [{"id": "a"}]})
    with pytest.raises(ResourceGraphIncomplete, match="truncated"):
        rg.query_all(send, QUERY, ["s"])


def test_rows_short_of_total_records_are_read_again_once_then_fail_closed() -> None:
    short = {"totalRecords": 3, "count": 2, "resultTruncated": "false", "data": [{"id": "a"}, {"id": "b"}]}
    send, tokens = answering(short)
    with pytest.raises(ResourceGraphIncomplete, match="2 row"):
        rg.query_all(send, QUERY, ["s"])
    assert tokens == [None, None]  # the first read, one re-read from the start, nothing more


def test_a_row_shifted_between_pages_is_healed_by_the_re_read() -> None:
    # first read: a row moved between page calls (§4.4) and was skipped; the re-read is whole
    first = {"totalRecords": 3, "count": 2, "resultTruncated": "false", "data": [{"id": "a"}, {"id": "b"}],
             "$skipToken": "t1"}
    skipped = {"totalRecords": 3, "count": 0, "resultTruncated": "false", "data": []}
    whole = {"totalRecords": 3, "count": 3, "resultTruncated": "false", "data": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}
    send, tokens = answering(first, skipped, whole)
    rows, pages = rg.query_all(send, QUERY, ["s"])
    assert [r["id"] for r in rows] == ["a", "b", "c"] and pages == 3 and tokens == [None, "t1", None]


def test_a_whole_paged_answer_passes() -> None:
    graph = FakeGraph([vm(f"vm-{i:04d}", {}) for i in range(2500)])
    rows, pages = rg.query_all(graph.send, "resources | project id | order by id asc", [])
    assert len(rows) == 2500 and pages == 3


@pytest.mark.parametrize("body", [None, "", "  ", "not json", "[]", "null"])
def test_an_empty_or_non_object_body_is_a_failed_read(body: str | None) -> None:
    with pytest.raises(ResourceGraphIncomplete):
        _page_of(body)


class Truncating(FakeGraph):
    """The fake table, answering every query truncated after its first row."""

    def send(self, query: str, subscriptions: list[str], token: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        page, headers = super().send(query, subscriptions, token)
        return {**page, "data": page["data"][:1], "resultTruncated": "true"}, headers


def test_a_ring_resolution_on_a_truncated_answer_raises_and_never_answers_fewer_members() -> None:
    graph = Truncating([vm(f"vm-{i}", {"patchRing": "ring0"}, rg_name="rg-web") for i in range(3)])
    with pytest.raises(ResourceGraphIncomplete):
        resolve_ring_members_core(None, spec(RING0), send=graph.send, gate=rg.QuotaGate())  # type: ignore[arg-type]


def test_cheap_samples_on_a_truncated_answer_are_unknown_never_healthy() -> None:
    graph = Truncating([vm(f"vm-{i}", {}) for i in range(3)])
    out = check_vm_health_batch_core(None, cheap("vm-0", "vm-1", "vm-2"), send=graph.send,  # type: ignore[arg-type]
                                     gate=rg.QuotaGate(), http_get=probe_ok)
    assert all(s["powerState"] is None and "ResourceGraphIncomplete" in s["readError"] for s in out["samples"])
