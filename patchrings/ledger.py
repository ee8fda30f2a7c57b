"""The ledger: rollout history in Azure Table storage (Azurite locally).

Why a ledger at all: Durable history is an implementation detail (purged, replayed) and Azure
Resource Graph keeps install results for 30 days only. The ledger keeps what an auditor or the
status API needs (rollouts, ring runs, per-VM results, approvals, received events, install
tokens) for as long as the storage account lives.

Design rules:

* **Natural keys.** Every row is addressed by ids the caller already has (rollout id, ring,
  run id, VM id, decision id, event id), so a retried write lands on the same row:
  ``PartitionKey``/``RowKey`` are built from them, escaped because Table keys may not contain
  ``/ \\ # ?`` or control characters (ARM ids are full of ``/``). VM and configuration ids are
  lower-cased first: ARM ids compare case-insensitively. A key may hold at most 1 KiB (Azurite
  refuses more than 512 characters), so a longer one keeps its first characters plus a sha256 of
  the whole (:func:`bound_key`): a hostile 2 KiB event id still lands on one row, never a 500.
* **Idempotent writes.** State rows are upserted in MERGE mode (same write twice = same row);
  approvals, events and install records are *append-only*: inserted with ``create_entity``,
  so a duplicate (same decision/event id) collapses into the first and reports
  ``written=False``.
* **Small rows, JSON columns.** Nested values are stored as JSON text. A Table string property
  holds at most 64 KiB (32 K UTF-16 characters), so JSON is split over numbered columns
  (``<name>__j0``, ``<name>__j1``... with the count in ``<name>__jn``; ``<name>`` itself holds a
  marker) and read back transparently. Per-VM rows stay small: one row per VM, never one row per ring.
* **Tables are created on first use** (``create_table_if_not_exists``), once per process.

Tables (``<prefix>`` = ``PATCHRINGS_LEDGER_TABLE_PREFIX``):

=====================  =============================  ==================================
table                  PartitionKey                   RowKey
=====================  =============================  ==================================
``<prefix>Rollouts``   rollout id                     ``rollout``
``<prefix>RingRuns``   rollout id                     ring ``|`` run id
``<prefix>Runs``       run id (lower-case)            rollout id   (gate index, see below)
``<prefix>VmResults``  rollout id ``|`` ring          VM id (lower-case)
``<prefix>Approvals``  rollout id                     decision id
``<prefix>Events``     configuration id (lower-case)  event type ``|`` event id
``<prefix>Installs``   run id                         VM id (lower-case)
``<prefix>Quarantine`` plan name (lower-case)         entry id (``<rollout id>:<ring>``)
``<prefix>Waves``      run id (lower-case)            ``plan`` / plan hash ``|w<wave>.<slice>``
=====================  =============================  ==================================

``Waves`` (issue 11, bounded history) holds a direct ring run's membership and wave plan, so the
ring orchestration carries counts and indexes instead of every VM: one ``plan`` row (count,
wave sizes, slice size, per-OS counts, the plan's hash; created once, so a retried planner
answers the first plan) and one row per wave slice (at most a slice's VmRefs, JSON), keyed by
the plan's hash, so two planners racing never mix their slices. A scheduled run's Resource Graph
entries are staged beside the slices (``stage_run_results``): per slice an index row
``<hash>|r<wave>.<slice>`` and its parts ``…|p<n>``, plus a ``<hash>|stage`` progress row.

``Runs`` indexes ring-run rows that carry an ``authorised`` flag by run id (a scheduled run's
correlationId), so the fail-closed guard, which knows only the run, finds the decision of
whichever rollout owns it with one partition query.

``Quarantine`` holds the patches a failed gate blamed (``patchrings.domain.quarantine``), per
plan, so the next cycle's Ring 0 excludes them: created once (create-only: a retried record
cannot undo a release), released by a person (a MERGE of ``released`` / ``releasedBy`` /
``releasedAt`` / ``releaseReason``).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, UpdateMode

if TYPE_CHECKING:
    from azure.data.tables import TableClient, TableServiceClient

    from patchrings.clients import AzureClients

__all__ = ["TABLES", "Ledger", "bound_key", "decode_entity", "encode_fields", "escape_key", "staged_key",
           "wave_slice_key"]

TABLES = ("Rollouts", "RingRuns", "Runs", "VmResults", "Approvals", "Events", "Installs", "Quarantine", "Waves")

_KEY_UNSAFE = re.compile(r"[/\\#?%|\x00-\x1f\x7f-\x9f]")
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
_RESERVED = frozenset({"PartitionKey", "RowKey", "Timestamp", "etag", "odata"})
_CHUNK = 30_000  # characters per JSON column: < 64 KiB as UTF-16
_ROW_BUDGET = 450_000  # JSON characters per row: < 1 MiB entity limit as UTF-16, with headroom
_BATCH_BYTES = 3_000_000  # a transaction's payload must stay under 4 MiB
_BATCH_OPS = 100
_INT32 = (-(2**31), 2**31 - 1)
_JSON_MARKER = "\u2063json"  # invisible separator + "json": never a real field value


def escape_key(value: str) -> str:
    """Make ``value`` safe as a PartitionKey/RowKey: percent-encode ``/ \\ # ? % |`` and controls.

    ``|`` is escaped too because the ledger uses it to join the parts of composite keys, which
    keeps every key reversible and unambiguous.
    """
    return _KEY_UNSAFE.sub(lambda m: f"%{ord(m.group(0)):02X}", value)


MAX_KEY = 500  # characters; Azure Table keys hold 1 KiB, Azurite refuses more than 512 characters


def bound_key(key: str) -> str:
    """``key`` if it fits a Table key, else its first characters + ``~`` + its sha256 (stable)."""
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{key[: MAX_KEY - len(digest) - 1]}~{digest}"


def _id_key(resource_id: str) -> str:
    return escape_key(resource_id.lower())


def encode_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a JSON-safe dict into Table properties (scalars as is, nested values as JSON columns).

    ``None`` values are left out (a MERGE upsert then keeps what was there).
    """
    out: dict[str, Any] = {}
    budget = _ROW_BUDGET
    for name, value in fields.items():
        if not _PROPERTY_NAME.match(name) or name in _RESERVED or "__j" in name:
            raise ValueError(f"ledger field name {name!r} is not allowed (letters, digits, underscore)")
        if value is None:
            continue
        if isinstance(value, bool | float):
            out[name] = value
        elif isinstance(value, int):
            out[name] = value if _INT32[0] <= value <= _INT32[1] else EntityProperty(value, EdmType.INT64)
        elif isinstance(value, str) and len(value.encode("utf-16-le")) <= 2 * _CHUNK:
            out[name] = value
        else:
            text = json.dumps(value, separators=(",", ":"), sort_keys=True)
            if len(text) > budget:
                # Keep the row writable: an oversized field is replaced by a marker, never
                # failing the write (the durable history still has the full value).
                text = json.dumps({"truncated": True, "characters": len(text)})
            budget -= len(text)
            chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
            for index, chunk in enumerate(chunks):
                out[f"{name}__j{index}"] = chunk
            out[f"{name}__jn"] = len(chunks)
            # The plain column marks "the value is the JSON": with MERGE upserts a later scalar
            # write replaces the marker and wins over the stale JSON columns.
            out[name] = _JSON_MARKER
    return out


def decode_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_fields`: drop keys/metadata, reassemble JSON columns."""
    out: dict[str, Any] = {}
    json_counts = {k[: -len("__jn")]: int(v) for k, v in entity.items() if k.endswith("__jn")}
    for key, value in entity.items():
        if key in ("PartitionKey", "RowKey") or "__j" in key:
            continue
        out[key] = value.value if isinstance(value, EntityProperty) else value
    for name, count in json_counts.items():
        if count <= 0 or entity.get(name, _JSON_MARKER) != _JSON_MARKER:
            continue
        text = "".join(str(entity.get(f"{name}__j{i}", "")) for i in range(count))
        out[name] = json.loads(text) if text else None
    return out


def _size(entity: Mapping[str, Any]) -> int:
    return 2 * sum(len(str(k)) + len(str(v.value if isinstance(v, EntityProperty) else v))
                   for k, v in entity.items())


class Ledger:
    """Typed access to the ledger tables. Thread-safe; one instance per process is enough."""

    def __init__(self, service: TableServiceClient, prefix: str = "patchrings") -> None:
        self._service = service
        self._prefix = prefix
        self._lock = threading.Lock()
        self._tables: dict[str, TableClient] = {}

    @classmethod
    def from_clients(cls, clients: AzureClients) -> Ledger:
        """The ledger on the Table service and prefix the settings name."""
        return cls(clients.table_service(), clients.settings.ledger_table_prefix)

    def table_name(self, table: str) -> str:
        if table not in TABLES:
            raise ValueError(f"unknown ledger table {table!r}; known: {', '.join(TABLES)}")
        return f"{self._prefix}{table}"

    def table(self, table: str) -> TableClient:
        """The TableClient for ``table``, creating the table on first use."""
        name = self.table_name(table)
        with self._lock:
            client = self._tables.get(name)
        if client is None:
            client = self._service.create_table_if_not_exists(name)
            with self._lock:
                self._tables.setdefault(name, client)
        return client

    # ------------------------------------------------------------------ primitives
    def _upsert(self, table: str, pk: str, rk: str, fields: Mapping[str, Any]) -> bool:
        entity = {"PartitionKey": bound_key(pk), "RowKey": bound_key(rk), **encode_fields(fields)}
        self.table(table).upsert_entity(entity, mode=UpdateMode.MERGE)
        return True

    def _append(self, table: str, pk: str, rk: str, fields: Mapping[str, Any]) -> bool:
        entity = {"PartitionKey": bound_key(pk), "RowKey": bound_key(rk), **encode_fields(fields)}
        try:
            self.table(table).create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    def _get(self, table: str, pk: str, rk: str) -> dict[str, Any] | None:
        try:
            return decode_entity(self.table(table).get_entity(bound_key(pk), bound_key(rk)))
        except ResourceNotFoundError:
            return None

    def _partition(self, table: str, pk: str) -> list[dict[str, Any]]:
        entities = self.table(table).query_entities("PartitionKey eq @pk", parameters={"pk": bound_key(pk)})
        return [decode_entity(e) for e in entities]

    # ------------------------------------------------------------------ rollouts
    def record_rollout(self, rollout_id: str, fields: Mapping[str, Any]) -> bool:
        """Upsert the rollout's row (state, plan hash, initiator, manifest...)."""
        return self._upsert("Rollouts", escape_key(rollout_id), "rollout", {**fields, "rolloutId": rollout_id})

    def rollout(self, rollout_id: str) -> dict[str, Any] | None:
        return self._get("Rollouts", escape_key(rollout_id), "rollout")

    def rollouts(self) -> list[dict[str, Any]]:
        """Every rollout row (a table scan: fine for an operator listing, not for hot paths)."""
        return [decode_entity(e) for e in self.table("Rollouts").list_entities()]

    # ------------------------------------------------------------------ ring runs
    def record_ring_run(self, rollout_id: str, ring: str | int, run_id: str, fields: Mapping[str, Any]) -> bool:
        """Upsert one run of one ring (direct waves or a scheduled occurrence) and its gate."""
        rk = f"{escape_key(str(ring))}|{escape_key(run_id)}"
        row = {**fields, "rolloutId": rollout_id, "ring": str(ring), "runId": run_id}
        if "authorised" in fields:
            index = {key: fields.get(key) for key in ("authorised", "state", "at", "configurationId", "manifestHash")}
            self._upsert("Runs", _id_key(run_id), escape_key(rollout_id),
                         {**index, "rolloutId": rollout_id, "ring": str(ring), "runId": run_id})
        return self._upsert("RingRuns", escape_key(rollout_id), rk, row)

    def run_gates(self, run_id: str) -> list[dict[str, Any]]:
        """The gate decisions recorded for one run (normally one rollout's), by run id."""
        return self._partition("Runs", _id_key(run_id))

    def ring_run(self, rollout_id: str, ring: str | int, run_id: str) -> dict[str, Any] | None:
        return self._get("RingRuns", escape_key(rollout_id), f"{escape_key(str(ring))}|{escape_key(run_id)}")

    def ring_runs(self, rollout_id: str) -> list[dict[str, Any]]:
        return self._partition("RingRuns", escape_key(rollout_id))

    # ------------------------------------------------------------------ per-VM results
    def record_vm_results(
        self, rollout_id: str, ring: str | int, run_id: str, results: Iterable[Mapping[str, Any]]
    ) -> int:
        """Upsert one row per VM (``result["vm"]`` is the VM id) in size-bounded batches.

        Returns the number of rows written.
        """
        pk = bound_key(f"{escape_key(rollout_id)}|{escape_key(str(ring))}")
        batch: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        size = written = 0
        table = self.table("VmResults")
        for result in results:
            vm = str(result.get("vm") or result.get("id") or "")
            if not vm:
                raise ValueError("every VM result needs a 'vm' (resource id)")
            fields = {**result, "vm": vm, "rolloutId": rollout_id, "ring": str(ring), "runId": run_id}
            entity = {"PartitionKey": pk, "RowKey": bound_key(_id_key(vm)), **encode_fields(fields)}
            entity_size = _size(entity)
            if batch and (len(batch) >= _BATCH_OPS or size + entity_size > _BATCH_BYTES):
                table.submit_transaction(batch)
                written += len(batch)
                batch, size = [], 0
            batch.append(("upsert", entity, {"mode": UpdateMode.MERGE}))
            size += entity_size
        if batch:
            table.submit_transaction(batch)
            written += len(batch)
        return written

    def vm_results(self, rollout_id: str, ring: str | int) -> list[dict[str, Any]]:
        return self._partition("VmResults", f"{escape_key(rollout_id)}|{escape_key(str(ring))}")

    # ------------------------------------------------------------------ approvals (append-only)
    def record_approval(self, rollout_id: str, decision_id: str, fields: Mapping[str, Any]) -> bool:
        """Append one approval decision; a second write of the same decision id is a no-op."""
        row = {**fields, "rolloutId": rollout_id, "decisionId": decision_id}
        return self._append("Approvals", escape_key(rollout_id), escape_key(decision_id), row)

    def approvals(self, rollout_id: str) -> list[dict[str, Any]]:
        """Decisions in the order they were recorded (the rows are append-only, so the storage
        ``Timestamp`` of each is its insertion time), then by id.

        Why not the rows' own ``at``: the HTTP API records a request before the rollout sees it
        and cannot read the platform's (orchestration's) clock, so its rows carry no time; the
        rollout stamps ``at`` / ``decidedAt`` when it takes a decision (issue 9)."""
        entities = self.table("Approvals").query_entities(
            "PartitionKey eq @pk", parameters={"pk": bound_key(escape_key(rollout_id))})
        keyed = []
        for entity in entities:
            stamp = getattr(entity, "metadata", {}).get("timestamp")
            seconds = float(stamp.timestamp()) if stamp is not None and hasattr(stamp, "timestamp") else 0.0
            keyed.append((seconds, decode_entity(entity)))
        keyed.sort(key=lambda pair: (pair[0], str(pair[1].get("decisionId"))))
        return [row for _, row in keyed]

    # ------------------------------------------------------------------ events (append-only)
    def record_event(
        self, configuration_id: str, event_type: str, event_id: str, fields: Mapping[str, Any]
    ) -> bool:
        """Append one received event. Pre and post events share an id (the correlationId), so
        the type is part of the key; a redelivery of the same event is a no-op."""
        row = {**fields, "configurationId": configuration_id, "eventType": event_type, "eventId": event_id}
        rk = f"{escape_key(event_type)}|{_id_key(event_id)}"
        return self._append("Events", _id_key(configuration_id), rk, row)

    def event(self, configuration_id: str, event_type: str, event_id: str) -> dict[str, Any] | None:
        """One recorded event (point read: cheaper than scanning :meth:`events`)."""
        return self._get("Events", _id_key(configuration_id), f"{escape_key(event_type)}|{_id_key(event_id)}")

    def events(self, configuration_id: str) -> list[dict[str, Any]]:
        rows = self._partition("Events", _id_key(configuration_id))
        return sorted(rows, key=lambda r: (str(r.get("receivedAt") or ""), str(r.get("eventId"))))

    # ------------------------------------------------------------------ install records
    def record_install(self, run_id: str, vm_id: str, fields: Mapping[str, Any]) -> bool:
        """Record that installPatches was sent to ``vm_id`` for ``run_id`` (create-only).

        ``False`` means a record already existed: another attempt got there first.
        """
        row = {**fields, "runId": run_id, "vm": vm_id}
        return self._append("Installs", escape_key(run_id), _id_key(vm_id), row)

    def update_install(self, run_id: str, vm_id: str, fields: Mapping[str, Any]) -> bool:
        """Merge more facts (final result, error) into an install record."""
        return self._upsert("Installs", escape_key(run_id), _id_key(vm_id), {**fields, "runId": run_id})

    def delete_install(self, run_id: str, vm_id: str) -> None:
        """Forget an install claim whose POST was definitely refused, so a retry may send it."""
        self.table("Installs").delete_entity(bound_key(escape_key(run_id)), bound_key(_id_key(vm_id)))

    def install(self, run_id: str, vm_id: str) -> dict[str, Any] | None:
        return self._get("Installs", escape_key(run_id), _id_key(vm_id))

    # ------------------------------------------------------------------ quarantine (issue 11)
    def record_quarantine(self, plan_name: str, entry_id: str, fields: Mapping[str, Any]) -> bool:
        """Create a quarantine entry of ``plan_name`` (create-only; ``False``: it existed already)."""
        row = {**fields, "planName": plan_name, "id": entry_id}
        return self._append("Quarantine", escape_key(plan_name.lower()), escape_key(entry_id), row)

    def quarantine(self, plan_name: str, entry_id: str) -> dict[str, Any] | None:
        return self._get("Quarantine", escape_key(plan_name.lower()), escape_key(entry_id))

    def quarantines(self, plan_name: str) -> list[dict[str, Any]]:
        """Every entry of the plan, released ones included (oldest first by their ``at``)."""
        rows = self._partition("Quarantine", escape_key(plan_name.lower()))
        return sorted(rows, key=lambda r: (str(r.get("at") or ""), str(r.get("id") or "")))

    def release_quarantine(self, plan_name: str, entry_id: str, *, by: str, at: str | None,
                           reason: str | None = None) -> dict[str, Any] | None:
        """Mark an entry released (idempotent: a released entry keeps its first release).

        Returns the entry as it is now, or None when the plan has no such entry."""
        row = self.quarantine(plan_name, entry_id)
        if row is None:
            return None
        if row.get("released"):
            return row
        fields = {"released": True, "releasedBy": by, "releasedAt": at, "releaseReason": reason}
        self._upsert("Quarantine", escape_key(plan_name.lower()), escape_key(entry_id), fields)
        return {**row, **{k: v for k, v in fields.items() if v is not None}}

    # ------------------------------------------------------------------ wave plans (issue 11)
    def wave_plan(self, run_id: str) -> dict[str, Any] | None:
        """The wave plan of a direct ring run (its ``plan`` row), or None before it is written."""
        return self._get("Waves", _id_key(run_id), "plan")

    def record_wave_plan(self, run_id: str, plan: Mapping[str, Any],
                         slices: Iterable[tuple[int, int, list[dict[str, Any]]]]) -> dict[str, Any]:
        """Write a run's wave slices (``(wave, slice, vms)``), then its ``plan`` row, create-only.

        Returns the plan that holds: this one, or the one another planner wrote first (its
        slices are keyed by its own hash, so the two never mix)."""
        pk = bound_key(_id_key(run_id))
        digest = str(plan["hash"])
        table = self.table("Waves")
        batch: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        size = 0
        for wave, part, vms in slices:
            entity = {"PartitionKey": pk, "RowKey": bound_key(wave_slice_key(digest, wave, part)),
                      **encode_fields({"wave": wave, "slice": part, "vms": vms})}
            entity_size = _size(entity)
            if batch and (len(batch) >= _BATCH_OPS or size + entity_size > _BATCH_BYTES):
                table.submit_transaction(batch)
                batch, size = [], 0
            batch.append(("upsert", entity, {"mode": UpdateMode.MERGE}))
            size += entity_size
        if batch:
            table.submit_transaction(batch)
        if self._append("Waves", _id_key(run_id), "plan", {**plan, "runId": run_id}):
            return {**plan, "runId": run_id}
        first = self.wave_plan(run_id)
        return first if first is not None else {**plan, "runId": run_id}

    def wave_slice(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None:
        """The VmRefs of one slice of one wave of a run's plan (None: no such slice)."""
        row = self._get("Waves", _id_key(run_id), wave_slice_key(plan_hash, wave, part))
        return None if row is None else list(row.get("vms") or [])


    # ------------------------------------------------------------------ staged run results (issue 11)
    def record_staged_results(self, run_id: str, plan_hash: str, wave: int, part: int,
                              entries: list[dict[str, Any]]) -> int:
        """Stage one planned slice's Resource Graph entries beside its members (``Waves``, same
        partition): the entries in parts of at most :data:`_STAGE_PART` JSON characters, then the
        slice's index row ``{parts, vms}`` (written last: a slice without it is not staged; a
        re-run overwrites the same rows). Returns the number of parts."""
        pk = bound_key(_id_key(run_id))
        base = staged_key(plan_hash, wave, part)
        parts: list[list[dict[str, Any]]] = [[]]
        size = 0
        for entry in entries:
            n = len(json.dumps(entry, separators=(",", ":")))
            if parts[-1] and size + n > _STAGE_PART:
                parts.append([])
                size = 0
            parts[-1].append(entry)
            size += n
        table = self.table("Waves")
        batch: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        for index, chunk in enumerate(parts):
            entity = {"PartitionKey": pk, "RowKey": bound_key(f"{base}|p{index:03d}"),
                      **encode_fields({"results": chunk})}
            batch.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
            if len(batch) >= 2:  # a part holds up to _STAGE_PART characters: two per transaction
                table.submit_transaction(batch)
                batch = []
        if batch:
            table.submit_transaction(batch)
        pending = sum(1 for e in entries if e.get("state") != "done" or not e.get("result"))
        self._upsert("Waves", _id_key(run_id), base,
                     {"parts": len(parts), "vms": len(entries), "pending": pending, "staged": True})
        return len(parts)

    def staged_results(self, run_id: str, plan_hash: str, wave: int, part: int) -> list[dict[str, Any]] | None:
        """One slice's staged entries (one range query: its index row and parts), None when the
        slice is not (completely) staged."""
        base = staged_key(plan_hash, wave, part)
        rows = self.table("Waves").query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": bound_key(_id_key(run_id)), "lo": base, "hi": base + "~"})
        index: dict[str, Any] | None = None
        parts: dict[str, list[dict[str, Any]]] = {}
        for entity in rows:
            key = str(entity.get("RowKey"))
            row = decode_entity(entity)
            if key == base:
                index = row
            elif key.startswith(base + "|p"):
                parts[key] = list(row.get("results") or []) if isinstance(row.get("results"), list) else []
        if index is None or not index.get("staged"):
            return None
        wanted = [f"{base}|p{i:03d}" for i in range(int(index.get("parts") or 0))]
        if any(key not in parts for key in wanted):
            return None
        out = [entry for key in wanted for entry in parts[key]]
        return out if len(out) == int(index.get("vms") or 0) else None

    def staged_slices(self, run_id: str, plan_hash: str) -> dict[tuple[int, int], int]:
        """The ``(wave, slice)`` pairs of a plan whose results are staged (their index rows), each
        with how many of its entries had no finished row (``pending``)."""
        prefix = f"{escape_key(plan_hash)}|r"
        rows = self.table("Waves").query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": bound_key(_id_key(run_id)), "lo": prefix, "hi": prefix + "~"},
            select=["RowKey", "staged", "pending"])
        out: dict[tuple[int, int], int] = {}
        for entity in rows:
            match = _STAGED_INDEX.match(str(entity.get("RowKey"))[len(prefix):])
            if match and entity.get("staged"):
                out[(int(match.group(1)), int(match.group(2)))] = int(entity.get("pending") or 0)
        return out

    def staging(self, run_id: str, plan_hash: str) -> dict[str, Any] | None:
        """The staging's progress row of a plan (``complete``, ``queries``, ``pages``), or None."""
        return self._get("Waves", _id_key(run_id), f"{escape_key(plan_hash)}|stage")

    def record_staging(self, run_id: str, plan_hash: str, fields: Mapping[str, Any]) -> bool:
        return self._upsert("Waves", _id_key(run_id), f"{escape_key(plan_hash)}|stage", fields)


#: JSON characters per staged part row (under the row budget with the JSON columns' overhead).
_STAGE_PART = 300_000
_STAGED_INDEX = re.compile(r"^(\d{5})\.(\d{3})$")


def staged_key(plan_hash: str, wave: int, part: int) -> str:
    """The RowKey of one slice's staged results index row: ``<hash>|r<wave>.<slice>`` (its parts
    add ``|p<n>``; ``r`` sorts apart from the slices' ``w`` rows)."""
    return f"{escape_key(plan_hash)}|r{int(wave):05d}.{int(part):03d}"


def wave_slice_key(plan_hash: str, wave: int, part: int) -> str:
    """The RowKey of one wave slice of a plan: ``<hash>|w<wave>.<slice>`` (zero-padded, sortable)."""
    return f"{escape_key(plan_hash)}|w{int(wave):05d}.{int(part):03d}"
