"""ring_direct._compact: the ledger row keeps a short list of installed patches (issue 13.7)."""

from __future__ import annotations

import pytest

from orchestrators.ring_direct import INSTALLED_IN_ROW, _compact

pytestmark = pytest.mark.unit


def test_compact_keeps_installed_kbs_and_packages_not_the_patch_list() -> None:
    patches = [
        {"kbId": "5040001", "name": "CU", "installationState": "Installed"},
        {"kbId": "KB5040002", "name": "Defender", "installationState": "Installed"},
        {"kbId": "5040003", "name": "Failed one", "installationState": "Failed"},
        {"name": "openssl", "version": "3.0.2-1ubuntu1.20", "installationState": "Installed"},
    ]
    row = _compact({"vm": "/x/vm1", "result": {"status": "Succeeded", "patches": patches}})
    assert row["result"] == {"status": "Succeeded", "installed": ["KB5040001", "KB5040002",
                                                                 "openssl=3.0.2-1ubuntu1.20"]}


def test_compact_caps_the_list_and_counts_the_rest() -> None:
    patches = [{"name": f"pkg{i:03d}", "version": "1", "installationState": "Installed"} for i in range(45)]
    result = _compact({"vm": "v", "result": {"patches": patches}})["result"]
    assert len(result["installed"]) == INSTALLED_IN_ROW and result["installedMore"] == 45 - INSTALLED_IN_ROW
    assert _compact({"vm": "v", "result": None})["result"] == {}
