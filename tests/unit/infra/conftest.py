"""Fixtures for the infrastructure data tests: the repository's infra/ folder and its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.infra.bicep_static import BicepFile, load_bicep

REPO = Path(__file__).resolve().parents[3]
INFRA = REPO / "infra"
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def bicep_files() -> dict[str, BicepFile]:
    """Every Bicep file under infra/, keyed by its path relative to infra/ (e.g. modules/storage.bicep)."""
    return {str(p.relative_to(INFRA)): load_bicep(p) for p in sorted(INFRA.rglob("*.bicep"))}
