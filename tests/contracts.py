"""Where the verbatim Azure contracts (``shared/contracts``) are.

CI runs a fresh clone with ``shared/`` beside it, so the default is ``<clone>/../shared/contracts``;
``PATCHRINGS_CONTRACTS`` overrides it. Tests that replay the contracts fail (rather than skip)
when they are missing: a silent skip would hide that nothing was checked.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _find() -> Path:
    candidates = [
        os.environ.get("PATCHRINGS_CONTRACTS"),
        REPO.parent / "shared" / "contracts",
        "/work/shared/contracts",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return REPO.parent / "shared" / "contracts"


CONTRACTS = _find()
EVENTGRID_EXAMPLES = CONTRACTS / "eventgrid" / "examples"
