"""Transition shim (issue 10): time is read and written with ``patchrings.domain.timeutil``.

Its duration grammar is gone (one grammar: the domain's); what is left re-exports the domain's
instant reader and writer for the last importer (tests/functional/test_results_integrity.py).
Delete this module once nothing imports it.
"""

from __future__ import annotations

from patchrings.domain.timeutil import iso, parse_instant

__all__ = ["iso", "parse_iso"]

parse_iso = parse_instant
