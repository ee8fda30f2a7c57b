"""What the API and the operator page show about rollouts: the list and one rollout at a glance.

Why a module of its own: ``GET /api/rollouts`` / ``GET /api/rollouts/{id}`` (``triggers/http_api.py``)
and the page's ``GET /api/ui/api/rollouts[/{id}]`` (``triggers/ui.py``, which adds ``viewer`` and
``pagePath``) answer the same documents; both call :func:`list_view` / :func:`status_view` here,
which return the JSON-ready document (each route answers it in its own headers) and raise
:class:`PatchRingsError` (``NotFound`` for an unknown rollout), never build a response.

The rollout at a glance (issue 9): each ring's phase and what it does now until when, counts read
from the running ring's child orchestrations (deterministic instance ids) that include VMs not
started, per-VM rows (short ``name``, full ``id``), the manifest's contents and diff, approvals;
times RFC 3339 ``Z``, links absolute (built from the request URL; the orchestrator keeps paths).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from orchestrators.ring_direct import WAVE_SLICE
from orchestrators.status import HALTED, diff_view, manifest_view, merged_health, ring_view, verify_instances
from patchrings import deps
from patchrings.domain.timeutil import format_instant
from patchrings.notifications import person_link
from triggers.rollouts import custom_status, is_active, list_rollouts, require_rollout, runtime_status


def _instant(value: Any) -> str | None:
    """The durable client's times as RFC 3339 UTC (``...Z``), the API's one time format."""
    if value in (None, ""):
        return None
    try:
        return format_instant(value)
    except (TypeError, ValueError):
        return str(value)


async def list_view(req: func.HttpRequest, client: Any) -> dict[str, Any]:
    """``GET /api/rollouts``: every rollout, newest first, with what it waits for (links absolute)."""
    base = base_url(req)
    items = []
    for status in await list_rollouts(client):
        doc = custom_status(status)
        items.append(
            {
                "id": status.instance_id,
                "runtimeStatus": runtime_status(status),
                "createdTime": _instant(status.created_time),
                "lastUpdatedTime": _instant(status.last_updated_time),
                "state": doc.get("state"),
                "currentRing": doc.get("currentRing"),
                "dryRun": doc.get("dryRun"),
                "initiator": doc.get("initiator"),
                "waitingFor": absolute_links(doc.get("waitingFor"), base, sign_in=links_sign_in()),
                "outcome": doc.get("outcome"),
                "url": f"{base}/api/rollouts/{status.instance_id}",
            }
        )
    items.sort(key=lambda i: str(i["createdTime"] or ""), reverse=True)
    return {"rollouts": items}


async def status_view(req: func.HttpRequest, rollout_id: str, client: Any) -> dict[str, Any]:
    """The rollout at a glance (issue 9): each ring's phase with what it does now and until when,
    counts that move while a ring runs (read from the ring's child orchestrations by their
    deterministic ids) and include VMs not started, per-VM rows (short ``name``, full ``id``) with
    their gate reasons, the manifest's contents, approvals, and what the rollout waits for; all
    times RFC 3339 UTC ``Z``, all links absolute. The raw custom status (``status``) and ledger
    rows (``ledger``) stay for scripts; the ledger's copy of the state document is not shown
    (it is a snapshot of an earlier moment)."""
    status = await require_rollout(client, rollout_id)
    doc = custom_status(status)
    base = base_url(req)
    sign_in = links_sign_in()
    waiting = absolute_links(doc.get("waitingFor"), base, sign_in=sign_in)
    body: dict[str, Any] = {
        "id": rollout_id,
        "runtimeStatus": runtime_status(status),
        "createdTime": _instant(status.created_time),
        "lastUpdatedTime": _instant(status.last_updated_time),
        "state": doc.get("state"),
        "currentRing": doc.get("currentRing"),
        "outcome": doc.get("outcome"),
        "halted": doc.get("halted"),
        "waitingFor": waiting,
        # the page is for a person: through App Service's login endpoint when its authentication is on
        "links": {"self": f"{base}/api/rollouts/{rollout_id}",
                  "page": person_link(base, f"/api/ui/rollouts/{rollout_id}", sign_in=sign_in)},
        "status": {**doc, "waitingFor": waiting} if doc else doc,
        "output": status.output,
    }
    ring_names = [str(r.get("name")) for r in doc.get("rings") or [] if r.get("name")]
    rows: dict[str, list[dict[str, Any]]] = {}
    rollout_row: dict[str, Any] | None = None
    try:
        ledger = deps.ledger()
        rollout_row = await asyncio.to_thread(ledger.rollout, rollout_id)
        if isinstance(rollout_row, dict):
            # no stale copy: the row's state document is a snapshot; the live one is ``status``
            rollout_row = {k: v for k, v in rollout_row.items() if k != "status"}
            if doc.get("state"):
                rollout_row["state"] = doc["state"]
        rows = {ring: await asyncio.to_thread(ledger.vm_results, rollout_id, ring) for ring in ring_names}
        approvals = await asyncio.to_thread(ledger.approvals, rollout_id)
        body["ledger"] = {
            "rollout": rollout_row,
            "ringRuns": await asyncio.to_thread(ledger.ring_runs, rollout_id),
            "approvals": approvals,
            "vmResults": rows,
        }
        body["approvals"] = approvals_view(approvals)
    except Exception as err:  # the durable status alone is still useful
        body["ledger"] = {"error": f"{type(err).__name__}: {err}"}
        body["approvals"] = [a for a in doc.get("approvals") or [] if isinstance(a, dict)]
    active = is_active(status)
    halted = doc.get("state") == HALTED
    views = []
    for ring in doc.get("rings") or []:
        progress = await ring_progress(client, ring) if active else None
        views.append(ring_view(ring, rows.get(str(ring.get("name")), []), progress, halted=halted,
                               current=ring.get("name") == doc.get("currentRing")))
    body["rings"] = views
    body["manifest"] = manifest_view((rollout_row or {}).get("manifest"), doc.get("manifest"))
    if body["manifest"] is not None:
        body["manifest"]["diff"] = diff_view((rollout_row or {}).get("manifestDiff"), doc.get("manifestDiff"))
    return body


def base_url(req: func.HttpRequest) -> str:
    """``scheme://host[:port]`` of the request, for absolute links (the orchestrator keeps paths).

    From the URL the Functions host hands over (the public host name on App Service); forwarded
    headers are not trusted, so a caller cannot make the API link elsewhere."""
    parts = urlsplit(str(req.url or ""))
    return f"{parts.scheme or 'https'}://{parts.netloc or 'localhost'}"


def links_sign_in() -> bool:
    """Links for a person go through App Service's login endpoint (settings only: App Service
    authentication on, ``WEBSITE_AUTH_ENABLED=True``; it answers a browser not signed in 401)."""
    return bool(getattr(deps.settings(), "platform_auth_enabled", False))


def absolute_links(waiting: Any, base: str, *, sign_in: bool = False) -> Any:
    """``waitingFor`` with its ``...Url`` paths made absolute (``pagePath`` -> ``pageUrl``, a
    person's link: through App Service's login endpoint when ``sign_in``)."""
    if not isinstance(waiting, dict):
        return waiting
    out = dict(waiting)
    for key, value in waiting.items():
        if key.endswith(("Url", "Path")) and isinstance(value, str) and value.startswith("/"):
            url_key = key[:-4] + "Url" if key.endswith("Path") else key
            out[url_key] = (person_link(base, value, sign_in=sign_in) if url_key == "pageUrl"
                            else base + value)
    return out


def approvals_view(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every decision, resume and halt the ledger holds, oldest first, in one flat shape.

    A request the API recorded as ``submitted`` (no time: the HTTP side has no platform clock)
    is left out once the rollout has recorded what it did with the same request (same ring,
    verdict, approver and manifest hash): one line per decision, with the rollout's time. A
    submission the rollout has not acted on yet stays (``outcome: submitted``)."""
    out = []
    acted = [_decision_key(row) for row in rows if row.get("outcome") not in (None, "submitted")]
    for row in rows:
        if row.get("outcome") == "submitted" and _decision_key(row) in acted:
            acted.remove(_decision_key(row))
            continue
        decision: dict[str, Any] = row["decision"] if isinstance(row.get("decision"), dict) else {}
        out.append({
            "id": row.get("decisionId"),
            "ring": row.get("ring") or decision.get("ring"),
            "verdict": decision.get("verdict") or row.get("verdict") or row.get("kind"),
            "approver": decision.get("approver") or row.get("approver") or row.get("by"),
            "outcome": row.get("outcome"),
            "manifestHash": decision.get("manifestHash") or row.get("manifestHash"),
            "comment": decision.get("comment") or row.get("comment") or row.get("reason"),
            "decidedAt": decision.get("decidedAt") or row.get("decidedAt"),
            "at": row.get("at"),
            # a quarantine decision (issue 11): its kind, the approver's choice and the entries
            # it released, so the API and the CLI show a release as the page does
            **{key: row[key] for key in ("kind", "choice", "releaseQuarantine") if row.get(key) is not None},
        })
    return out


def _decision_key(row: dict[str, Any]) -> tuple[Any, ...]:
    decision: dict[str, Any] = row["decision"] if isinstance(row.get("decision"), dict) else {}
    return (row.get("ring") or decision.get("ring"), decision.get("verdict") or row.get("verdict"),
            str(decision.get("approver") or row.get("approver") or "").lower(),
            decision.get("manifestHash") or row.get("manifestHash"))


async def _child_status(client: Any, instance_id: Any) -> dict[str, Any]:
    if not isinstance(instance_id, str) or not instance_id:
        return {}
    try:
        return custom_status(await client.get_status(instance_id))
    except Exception:  # a child not started yet (or purged): no progress to show
        return {}


async def ring_progress(client: Any, ring: dict[str, Any]) -> dict[str, Any] | None:
    """What a running ring's child orchestrations say now (their deterministic instance ids are
    in the ring's status entry): wave n of m, VMs installing / verifying, the health phase and
    until when; None when the ring is not running a child."""
    phase = ring.get("phase")
    instance = ring.get("instance")
    if phase not in ("installing", "collecting-and-verifying") or not instance:
        return None
    top = await _child_status(client, instance)
    if not top:
        return None
    progress: dict[str, Any] = {k: top[k] for k in ("wave", "waves", "vms", "skipped", "step") if k in top}
    if phase == "installing":
        first = top.get("waveInstance")
        wave = await _child_status(client, first)
        if wave:
            # A wave larger than ring_direct.WAVE_SLICE runs as several instances side by side
            # (``…:w{n}``, ``…:w{n}.1``, …): every slice's counts are summed.
            slices = [wave]
            in_flight = int(top.get("inFlight") or 0)
            for k in range(1, -(-in_flight // WAVE_SLICE) if in_flight > WAVE_SLICE else 1):
                part = await _child_status(client, f"{first}.{k}")
                if part:
                    slices.append(part)
            progress["inFlight"] = max(in_flight, sum(int(w.get("vms") or 0) for w in slices))
            if all(w.get("step") == "verifying" for w in slices):
                # each slice verifies in one instance per read burst (``<slice>:verify``, ``…:verify:1``, …)
                parents = [str(first)] + [f"{first}.{k}" for k in range(1, len(slices))]
                health = merged_health(await _burst_statuses(client, parents))
                progress.update(step="verifying", verifying=progress["inFlight"],
                                healthPhase=health.get("healthPhase"), until=health.get("until"))
            else:
                progress.update(step=wave.get("step") or "installing",
                                installing=sum(int(w.get("installing") or 0) for w in slices),
                                nextPollAt=min((str(w["nextPollAt"]) for w in slices if w.get("nextPollAt")),
                                               default=None))
                progress["verifying"] = sum(int(v) for w in slices for k, v in (w.get("states") or {}).items()
                                            if k in ("done", "not-needed"))
    elif top.get("step") == "verifying" and isinstance(top.get("verifyInstance"), str):
        # a scheduled ring verifies in chunks side by side (run_results: ``verifyInstance``,
        # ``verifyInstances``): their progress merged, at most MAX_CHILD_READS of them read
        chunks = verify_instances(top["verifyInstance"], int(top.get("verifyInstances") or 1))
        read = spread(chunks, MAX_CHILD_READS)
        statuses = await asyncio.gather(*(_child_status(client, i) for i in read))
        health = merged_health([s for s in statuses if s])
        progress.update(verifying=int(top.get("vms") or 0), inFlight=int(top.get("vms") or 0),
                        healthPhase=health.get("healthPhase"), until=health.get("until"),
                        verifyChunks=len(chunks), verifyChunksRead=len(read))
    return progress


#: Most child instances one status request reads for a ring's verify progress (a 10,000-VM
#: scheduled ring has 50 chunks: a request reads an even spread of them, first and last included).
MAX_CHILD_READS = 20


def spread(ids: list[str], most: int) -> list[str]:
    """At most ``most`` of ``ids``, evenly spread, the first and the last included (chunks start
    staggered: the first are furthest along, the last decides the latest ``until``)."""
    if len(ids) <= most:
        return list(ids)
    if most <= 1:
        return ids[:1]
    return [ids[round(i * (len(ids) - 1) / (most - 1))] for i in range(most)]


async def _burst_statuses(client: Any, parents: list[str]) -> list[dict[str, Any]]:
    """The verify instances of a direct wave's slices: ``<slice>:verify``, then ``…:verify:1``,
    ``…:verify:2`` … until one is not there (the wave does not say how many), at most
    :data:`MAX_CHILD_READS` reads in all."""
    out: list[dict[str, Any]] = []
    budget = MAX_CHILD_READS
    for parent in parents:
        number = 0
        while budget > 0:
            budget -= 1
            status = await _child_status(client, f"{parent}:verify" + (f":{number}" if number else ""))
            if not status:
                break
            out.append(status)
            number += 1
    return out
