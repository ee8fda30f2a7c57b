"""The ARM simulator's ``Date`` header is its own (simulated) clock, as a real server's is its
clock (RFC 9110 §6.6.1). aiohttp would stamp the real wall clock when a handler sets none
(``StreamResponse._prepare_headers``, aiohttp 3.14); the compliance view reads "now" from
Resource Graph's ``Date`` (activities/compliance.py), so on the local platform it must be the
simulated time."""

from __future__ import annotations

from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError

from tests.emulator.arm.conftest import Running
from tests.emulator.arm.test_resourcegraph import query

pytestmark = pytest.mark.emulator


def test_date_is_the_simulated_time_on_arg_and_arm_answers(arm: Running) -> None:
    arm.advance_to(arm.now() + timedelta(days=3, minutes=7))
    expected = arm.now().replace(microsecond=0)
    page = query(arm, "patchassessmentresources | project id")
    assert parsedate_to_datetime(page["_headers"]["Date"]) == expected
    with pytest.raises(HttpResponseError) as caught:  # every ARM answer, errors too, not only Resource Graph's
        arm.compute().virtual_machines.get("rg-none", "vm-none")
    assert caught.value.response is not None and caught.value.status_code == 404
    headers: Any = getattr(caught.value.response, "headers", {})
    assert parsedate_to_datetime(headers["Date"]) == expected
