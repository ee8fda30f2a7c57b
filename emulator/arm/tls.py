"""A local CA and a loopback server certificate for the simulator's HTTPS listener.

Why: the Azure SDKs refuse bearer tokens over plain HTTP (contracts §4), so the simulator
speaks HTTPS with a certificate from a CA generated at start; clients get the CA file as
``connection_verify`` (``PATCHRINGS_ARM_CA_BUNDLE``). Generated with ``trustme`` per start, so
no private key is ever committed.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

__all__ = ["make_server_context"]


def make_server_context(state_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """Create a CA (written to ``state_dir/ca.pem``) and a server context for 127.0.0.1/localhost."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="PatchRings local ARM simulator")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca_path = state_dir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context, ca_path
