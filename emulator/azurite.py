"""Azurite (Table service) as a child process, for the ledger's local storage.

Why a process and not a fake: the ledger uses the real azure-data-tables client, and Azurite
is Microsoft's own emulator for that API (key escaping, batch rules, entity size limits), so
the same code path runs locally and against a real storage account.

SUPPORTED: start on a free loopback port (held from the moment it is picked until ``stop()``, see
:func:`reserve_port`, so parallel test workers never start two servers on one port), wait until
it accepts connections, the well-known
development account connection string, stop (terminating the whole process group) on
``stop()``, on interpreter exit, and when used as a context manager.

LIMITATIONS: only the Table service is started (the local Functions host keeps durable state
in SQLite, so Blob and Queue are not needed). Azurite must be installed from npm into
``node_modules`` (``make bootstrap`` does it).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# The documented, public development-storage key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    """Azurite could not be found or did not start."""


def free_port() -> int:
    """A free TCP port on loopback (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reserve_port() -> tuple[int, socket.socket | None]:
    """A free loopback port the OS picks, and a socket that holds it until the caller closes it.

    Why: :func:`free_port` lets go of the port at once, so between picking it and a server
    listening on it another process (a parallel test worker, ``pytest -n``) or an outgoing
    connection can be given the same port. The holder is bound with ``SO_REUSEADDR`` and never
    listens: while it is open the kernel hands the port to no ``bind(port 0)`` and to no outgoing
    connection, and a server that also sets ``SO_REUSEADDR`` (aiohttp and Node do on Linux) can
    still listen on it -- also again after a restart on the same port. Close the holder when the
    server is gone for good. Those are Linux's rules; elsewhere the holder is ``None`` (a plain
    :func:`free_port`).
    """
    if not sys.platform.startswith("linux"):
        return free_port(), None
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
    except OSError:
        holder.close()
        raise
    return int(holder.getsockname()[1]), holder


def find_azurite_table() -> str:
    """Locate the ``azurite-table`` launcher: the repository's node_modules first, then PATH."""
    local = REPO / "node_modules" / ".bin" / "azurite-table"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-table")
    if found:
        return found
    raise AzuriteError("azurite-table not found: run `make bootstrap` (npm install) first")


class Azurite:
    """One Azurite Table service process bound to 127.0.0.1."""

    def __init__(self, state_dir: Path, *, port: int | None = None, in_memory: bool = False) -> None:
        self.state_dir = Path(state_dir)
        self._port_holder: socket.socket | None = None
        if port:
            self.port = port
        else:
            self.port, self._port_holder = reserve_port()
        self.in_memory = in_memory
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path = self.state_dir / "azurite.log"

    @property
    def table_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def log_path(self) -> Path:
        return self._log

    def start(self, timeout: float = 30.0) -> Azurite:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            find_azurite_table(),
            "--tableHost", "127.0.0.1",
            "--tablePort", str(self.port),
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
        ]
        # Azurite refuses --location together with in-memory persistence.
        cmd += ["--inMemoryPersistence"] if self.in_memory else ["--location", str(self.state_dir)]
        if os.environ.get("AZURITE_DEBUG"):
            cmd += ["--debug", str(self.state_dir / "azurite-debug.log")]
        log = self._log.open("ab")
        self._proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise AzuriteError(f"Azurite exited with {self._proc.returncode}; see {self._log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AzuriteError(f"Azurite did not listen on port {self.port} in {timeout:.0f}s; see {self._log}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is None or proc.poll() is not None:
                return
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        finally:
            holder, self._port_holder = self._port_holder, None
            if holder is not None:
                holder.close()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
