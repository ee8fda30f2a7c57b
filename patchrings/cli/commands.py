"""``python -m patchrings rollouts list|show|start|dry-run|approve|reject|halt|resume``.

Where the API lives and how to authenticate:

* ``--url`` or ``PATCHRINGS_API_URL``: the Function App (``https://<app>.azurewebsites.net``;
  a trailing ``/api`` is accepted);
* ``--key`` or ``PATCHRINGS_API_KEY``: a function or host key, sent as ``x-functions-key``;
* ``--entra-scope`` or ``PATCHRINGS_ENTRA_SCOPE`` (e.g. ``api://<client id>/.default``): when App
  Service authentication protects the app, an Entra ID token for that scope from azure-identity's
  ``DefaultAzureCredential`` (Azure CLI login, environment, managed identity...) is sent as
  ``Authorization: Bearer``; the platform then tells the app who you are (approvals need it);
* ``--as NAME`` (local platform only): sends ``X-PatchRings-Approver: NAME``, which the app honours
  only with ``PATCHRINGS_APPROVER_HEADER_FALLBACK=true``, authentication off and not in Azure.

Exit codes: 0 done; 1 the API refused or failed (its error code and message are printed), or it
could not be reached; 2 usage (bad arguments, no URL, unreadable plan file). ``--json`` prints the
API's JSON answer (or ``{"error": ...}``) instead of tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from patchrings.cli.client import ApiClient, ApiError
from patchrings.cli.render import print_fields, print_table
from patchrings.domain.arm_ids import last_segment

ENV_URL = "PATCHRINGS_API_URL"
ENV_KEY = "PATCHRINGS_API_KEY"
ENV_SCOPE = "PATCHRINGS_ENTRA_SCOPE"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad invocation (exit 2)."""


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS: the options may be given before or after the verb without one erasing the other.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--url", help=f"the Function App's base URL (default: ${ENV_URL})")
    common.add_argument("--key", help=f"function or host key, sent as x-functions-key (default: ${ENV_KEY})")
    common.add_argument("--entra-scope", dest="entra_scope", metavar="SCOPE",
                        help="get an Entra ID token for SCOPE (api://<client id>/.default) with azure-identity and "
                             f"send it as Authorization: Bearer (default: ${ENV_SCOPE})")
    common.add_argument("--as", dest="approver", metavar="NAME",
                        help="LOCAL PLATFORM ONLY: act as NAME (X-PatchRings-Approver header; ignored in Azure)")
    common.add_argument("--json", dest="as_json", action="store_true", help="print the API's JSON answer")
    common.add_argument("--timeout", type=float, metavar="SECONDS", help="HTTP timeout (default 60)")
    return common


def add_rollouts_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``rollouts`` and its verbs to a subparsers object."""
    common = _common_options()
    parser: argparse.ArgumentParser = sub.add_parser(
        "rollouts", parents=[common], help="list, inspect, start, approve, halt rollouts over the HTTP API",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("list", parents=[common], help="list rollouts, newest first")
    show = verbs.add_parser("show", parents=[common], help="a rollout's rings, gates, manifest, approvals, waits")
    show.add_argument("id")
    for name, help_text in (("start", "start a rollout of the deployed plan"),
                            ("dry-run", "start a dry run: what each ring's VMs would install")):
        start = verbs.add_parser(name, parents=[common], help=help_text)
        start.add_argument("--plan", metavar="FILE", help="send this plan (inline plans must be enabled on the app "
                                                          "and may only restrict the deployed plan)")
        start.add_argument("--reason", help="why (recorded)")
        if name == "start":
            start.add_argument("--dry-run", dest="dry_run", action="store_true", help="same as the dry-run verb")
    for verdict in ("approve", "reject"):
        decide = verbs.add_parser(verdict, parents=[common], help=f"{verdict} a ring's pending promotion")
        decide.add_argument("id")
        decide.add_argument("ring")
        decide.add_argument("--manifest", required=True, metavar="HASH",
                            help="the manifest hash you reviewed (rollouts show ID: waiting for ... manifest)")
        decide.add_argument("--comment")
        if verdict == "approve":
            decide.add_argument("--release-quarantine", dest="release_quarantine", nargs="+", metavar="ENTRY",
                                help="while the rollout waits for a quarantine decision: release these entries "
                                     "and install as the plan says (rollouts show ID lists them)")
    for verb, help_text in (("halt", "halt a rollout (later rings stay closed)"),
                            ("resume", "resume a halted rollout (an approver of the ring it resumes at)")):
        action = verbs.add_parser(verb, parents=[common], help=help_text)
        action.add_argument("id")
        action.add_argument("--reason")
    return parser


# ---------------------------------------------------------------------- running
def entra_token(scope: str) -> Callable[[], str]:
    """A token getter for ``scope`` (azure-identity imported only when asked for)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as err:
        raise UsageError("--entra-scope needs azure-identity (pip install azure-identity)") from err
    credential = DefaultAzureCredential()
    cached: dict[str, str] = {}

    def token() -> str:
        if "token" not in cached:
            try:
                cached["token"] = credential.get_token(scope).token
            except Exception as err:  # ClientAuthenticationError and friends: say why, exit 1
                raise ApiError(0, f"could not get an Entra ID token for {scope}: {err}") from None
        return cached["token"]

    return token


def client_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> ApiClient:
    env = dict(os.environ) if env is None else env
    url = getattr(args, "url", None) or env.get(ENV_URL)
    if not url:
        raise UsageError(f"no API URL: pass --url or set {ENV_URL}")
    scope = getattr(args, "entra_scope", None) or env.get(ENV_SCOPE)
    try:
        return ApiClient(url, key=getattr(args, "key", None) or env.get(ENV_KEY),
                         token=entra_token(scope) if scope else None,
                         approver=getattr(args, "approver", None), timeout=getattr(args, "timeout", None) or 60)
    except ValueError as err:
        raise UsageError(f"--url / {ENV_URL}: {err}") from err


def read_plan(path: str) -> dict[str, Any]:
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"--plan {path}: {err}") from err
    if not isinstance(plan, dict):
        raise UsageError(f"--plan {path}: a plan is a JSON object")
    return plan


def run_rollouts(args: argparse.Namespace, *, client: ApiClient | None = None, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err_out = stderr or sys.stderr
    as_json = bool(getattr(args, "as_json", False))
    try:
        api = client or client_from_args(args)
        answer = _call(args, api)
    except UsageError as err:
        print(f"error: {err}", file=err_out)
        return EXIT_USAGE
    except ApiError as err:
        if as_json:
            print(json.dumps(err.to_dict(), indent=2), file=out)
        print(f"error: {err}", file=err_out)
        return EXIT_FAILED
    if as_json:
        print(json.dumps(answer, indent=2, default=str), file=out)
    else:
        RENDER[args.verb](args, answer, out)
    return EXIT_OK


def _call(args: argparse.Namespace, api: ApiClient) -> Any:
    verb = args.verb
    if verb == "list":
        return api.list_rollouts()
    if verb == "show":
        return api.get_rollout(args.id)
    if verb in ("start", "dry-run"):
        plan = read_plan(args.plan) if args.plan else None
        return api.start(dry_run=verb == "dry-run" or bool(getattr(args, "dry_run", False)), plan=plan,
                         reason=args.reason)
    if verb in ("approve", "reject"):
        return api.decide(args.id, args.ring, verb, args.manifest, args.comment,
                          release_quarantine=getattr(args, "release_quarantine", None))
    if verb == "halt":
        return api.halt(args.id, args.reason)
    if verb == "resume":
        return api.resume(args.id, args.reason)
    raise UsageError(f"unknown verb {verb}")


# ---------------------------------------------------------------------- human output
def _waiting_text(waiting: Any) -> str | None:
    if not isinstance(waiting, dict) or not waiting.get("what"):
        return None
    text = str(waiting["what"])
    if waiting.get("ring"):
        text += f" ({waiting['ring']})"
    if waiting.get("until"):
        text += f" until {waiting['until']}"
    return text


def _render_list(args: argparse.Namespace, answer: Any, out: TextIO) -> None:
    rollouts = (answer or {}).get("rollouts") or []
    if not rollouts:
        print("no rollouts", file=out)
        return
    rows = [(r.get("id"), r.get("state"), r.get("runtimeStatus"), r.get("currentRing"),
             _waiting_text(r.get("waitingFor")), r.get("dryRun"), r.get("createdTime"), r.get("initiator"))
            for r in rollouts]
    print_table(None, ("ID", "STATE", "RUNTIME", "RING", "WAITING FOR", "DRY RUN", "CREATED", "INITIATOR"), rows,
                stream=out)


def _render_show(args: argparse.Namespace, answer: Any, out: TextIO) -> None:
    body: dict[str, Any] = answer if isinstance(answer, dict) else {}
    doc: dict[str, Any] = body["status"] if isinstance(body.get("status"), dict) else {}
    plan: dict[str, Any] = doc["plan"] if isinstance(doc.get("plan"), dict) else {}
    halted: dict[str, Any] | None = doc["halted"] if isinstance(doc.get("halted"), dict) else None
    print_fields(f"rollout {body.get('id')}", [
        ("state", body.get("state")), ("runtime", body.get("runtimeStatus")),
        ("plan", f"{plan.get('name')} {plan.get('hash') or ''}".strip() if plan else None),
        ("dry run", doc.get("dryRun")), ("initiator", doc.get("initiator")), ("reason", doc.get("reason")),
        ("started", doc.get("startedAt") or body.get("createdTime")),
        ("updated", doc.get("updatedAt") or body.get("lastUpdatedTime")),
        ("current ring", doc.get("currentRing")), ("outcome", doc.get("outcome")),
        *((("halted", f"by {halted.get('by')} at {halted.get('at')}: {halted.get('reason')}"),) if halted else ()),
    ], stream=out)
    waiting = body.get("waitingFor") or doc.get("waitingFor")
    if isinstance(waiting, dict) and waiting.get("what"):
        print_fields("waiting for", [(k, waiting.get(k)) for k in ("what", "kind", "ring", "until", "manifestHash",
                                                                    "approvers", "approveUrl", "reason",
                                                                    "quarantine") if waiting.get(k) is not None],
                     stream=out)
        if waiting.get("what") == "approval" and waiting.get("ring") and waiting.get("manifestHash"):
            print(f"  to decide: python -m patchrings rollouts approve {body.get('id')} {waiting['ring']} "
                  f"--manifest {waiting['manifestHash']}   (or: reject)\n", file=out)
    views = [r for r in body.get("rings") or [] if isinstance(r, dict)]
    if views:
        _render_ring_views(views, out)
    else:
        _render_doc_rings(doc, out)
    _render_manifest(body.get("manifest"), doc.get("manifest"), out)
    if doc.get("dryRun"):
        _render_dry_run(body.get("output"), doc, out)
    if views:
        rows = [(r.get("name"), v.get("name"), v.get("outcome") or v.get("install"), v.get("health"),
                 _short_text((v.get("reasons") or [None])[0]))
                for r in views for v in r.get("vms") or [] if isinstance(v, dict)]
        if rows:
            print_table("virtual machines", ("RING", "VM", "VERDICT", "HEALTH", "REASON"), rows, stream=out)
    else:
        _render_vms(body.get("ledger"), out)
    approvals: list[Any] = body["approvals"] if isinstance(body.get("approvals"), list) else doc.get("approvals") or []
    decisions: list[tuple[Any, ...]] = [
        (a.get("decidedAt") or a.get("at"), a.get("ring"), a.get("verdict") or a.get("outcome"),
         a.get("outcome") if a.get("verdict") else None, a.get("approver"), _short_text(a.get("comment"), 40))
        for a in approvals if isinstance(a, dict)]
    if decisions:
        print_table("approvals", ("AT", "RING", "DECISION", "STATE", "BY", "COMMENT"), decisions, stream=out)


def _render_ring_views(views: list[dict[str, Any]], out: TextIO) -> None:
    """The API's ring views (issue 9): what each ring does now and counts including VMs not started."""
    rows: list[tuple[Any, ...]] = []
    for ring in views:
        counts: dict[str, Any] = ring["counts"] if isinstance(ring.get("counts"), dict) else {}
        gate: dict[str, Any] = ring["gate"] if isinstance(ring.get("gate"), dict) else {}
        in_flight = counts.get("inFlight")
        if in_flight is None:  # an older API: what its running wave does now
            in_flight = (counts.get("installing") or 0) + (counts.get("verifying") or 0)
        # never started (error budget spent, halted) and not reached yet: both not started
        not_started = counts.get("notStarted")
        if not_started is not None or counts.get("skipped"):
            not_started = (not_started or 0) + (counts.get("skipped") or 0)
        rows.append((ring.get("name"), ring.get("phaseText") or ring.get("phase"), counts.get("vms"),
                     counts.get("passed"), counts.get("failed"), counts.get("inconclusive"), in_flight,
                     not_started, gate.get("outcome")))
    print_table("rings", ("RING", "NOW", "VMS", "PASS", "FAIL", "INCONCL", "RUNNING", "NOT STARTED", "GATE"), rows,
                stream=out)


def _render_doc_rings(doc: dict[str, Any], out: TextIO) -> None:
    rings = doc.get("rings") or []
    if rings:
        rows: list[tuple[Any, ...]] = []
        for ring in rings:
            gate = ring.get("gate") if isinstance(ring.get("gate"), dict) else {}
            counts = ring.get("counts") if isinstance(ring.get("counts"), dict) else {}
            rows.append((ring.get("name"), ring.get("patching"), ring.get("phase"),
                         " ".join(f"{k}={v}" for k, v in counts.items()) or None,
                         gate.get("outcome"), ring.get("opened")))
        print_table("rings", ("RING", "PATCHING", "PHASE", "COUNTS", "GATE", "OPENED"), rows, stream=out)


def _render_manifest(view: Any, summary: Any, out: TextIO) -> None:
    """The manifest's contents: KBs with titles and classifications, ``name=version`` packages."""
    if isinstance(view, dict):
        print_fields("manifest", [("hash", view.get("hash")), ("cutoff", view.get("cutoff")),
                                  ("KBs", len(view.get("windows") or [])), ("packages", len(view.get("linux") or []))],
                     stream=out)
        rows = [(w.get("kb"), _short_text(w.get("title"), 60), w.get("classifications"))
                for w in view.get("windows") or [] if isinstance(w, dict)]
        rows += [(p.get("package"), None, p.get("classifications")) for p in view.get("linux") or []
                 if isinstance(p, dict)]
        if rows:
            print_table(None, ("PATCH", "TITLE", "CLASSIFICATIONS"), rows, stream=out)
        diff = view.get("diff") if isinstance(view.get("diff"), dict) else None
        if diff and diff.get("unavailable"):
            print(f"diff against later rings: {diff.get('reason') or 'unavailable'}\n", file=out)
        elif diff and diff.get("rings"):
            diff_rows: list[tuple[Any, ...]] = [
                (r.get("ring"), r.get("machines"), r.get("assessed"), r.get("wouldInstall"),
                 r.get("notInManifestCount"), _short_text(_error_text(r.get("error")), 40))
                for r in diff["rings"] if isinstance(r, dict)]
            print_table("what later rings would install", ("RING", "MACHINES", "ASSESSED", "WOULD INSTALL",
                                                           "NOT IN MANIFEST", "ERROR"), diff_rows, stream=out)
    elif isinstance(summary, dict):
        print_fields("manifest", [(k, v) for k, v in summary.items() if not isinstance(v, dict)], stream=out)


def _error_text(error: Any) -> Any:
    return error.get("message") or error.get("code") if isinstance(error, dict) else error


def _short_text(value: Any, limit: int = 80) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _patch_text(item: Any) -> str:
    return str(item.get("patch") or item.get("key") or "") if isinstance(item, dict) else str(item)


def _render_dry_run(output: Any, doc: dict[str, Any], out: TextIO) -> None:
    """What a dry run found: per ring, then per VM, what the plan WOULD install (after the
    classification, pin and publish-date filters) with counts; from its output once it ended,
    else the rings' summaries in the status document."""
    rings = [r for r in (output.get("rings") if isinstance(output, dict) else None) or [] if isinstance(r, dict)]
    if not rings:
        summaries = [(r.get("name"), r["dryRun"]) for r in doc.get("rings") or []
                     if isinstance(r, dict) and isinstance(r.get("dryRun"), dict)]
        if summaries:
            print_table("dry run: what each ring would install", ("RING", "VMS", "ASSESSED", "WOULD INSTALL",
                                                                  "FILTERED", "ERRORS"),
                        [(name, s.get("vms"), s.get("assessed"), s.get("wouldInstall"), s.get("filtered"),
                          s.get("errors")) for name, s in summaries], stream=out)
        return
    ring_rows: list[tuple[Any, ...]] = []
    vm_rows: list[tuple[Any, ...]] = []
    for ring in rings:
        vms = [v for v in ring.get("vms") or [] if isinstance(v, dict)]
        ring_rows.append((ring.get("ring"), ring.get("patching"), len(vms),
                          sum(1 for v in vms if v.get("assessed")),
                          sum(int(v.get("wouldInstallCount") or 0) for v in vms),
                          sum(int(v.get("filteredCount") or 0) for v in vms),
                          sum(1 for v in vms if v.get("error"))))
        for vm in vms:
            patches = [_patch_text(p) for p in vm.get("wouldInstall") or []]
            error = vm.get("error")
            detail = (f"{error.get('code')}: {error.get('message')}" if isinstance(error, dict) else error) or (
                ", ".join(patches) if patches else "-")
            vm_rows.append((ring.get("ring"), vm.get("name") or last_segment(vm.get("vm")),
                            vm.get("os"), vm.get("availablePatchCount"), vm.get("wouldInstallCount"),
                            vm.get("filteredCount"), _short_text(detail, 60)))
    print_table("dry run: what each ring would install", ("RING", "PATCHING", "VMS", "ASSESSED", "WOULD INSTALL",
                                                          "FILTERED", "ERRORS"), ring_rows, stream=out)
    if vm_rows:
        print_table("dry run: per VM (WOULD = patches it would install)",
                    ("RING", "VM", "OS", "AVAILABLE", "WOULD", "FILTERED", "WOULD INSTALL"), vm_rows, stream=out)


def _render_vms(ledger_doc: Any, out: TextIO) -> None:
    """Per-VM rows from the ledger: short VM name (the full id is in --json), verdict, first reason."""
    results = ledger_doc.get("vmResults") if isinstance(ledger_doc, dict) else None
    if not isinstance(results, dict):
        return
    rows: list[tuple[Any, ...]] = []
    for ring, items in results.items():
        for row in items if isinstance(items, list) else []:
            if not isinstance(row, dict):
                continue
            verdict: dict[str, Any] = row["verdict"] if isinstance(row.get("verdict"), dict) else {}
            reasons = verdict.get("reasons") or []
            rows.append((ring, last_segment(row.get("vm")) or None,
                         verdict.get("outcome") or row.get("status") or row.get("state"),
                         _short_text(reasons[0] if isinstance(reasons, list) and reasons else None)))
    if rows:
        print_table("virtual machines", ("RING", "VM", "VERDICT", "REASON"), rows, stream=out)


def _render_start(args: argparse.Namespace, answer: Any, out: TextIO) -> None:
    kind = "dry run" if answer.get("dryRun") else "rollout"
    print(f"started {kind} {answer.get('id')}", file=out)
    print(f"status: python -m patchrings rollouts show {answer.get('id')}   ({answer.get('statusUrl')})", file=out)


def _render_decision(args: argparse.Namespace, answer: Any, out: TextIO) -> None:
    decision = answer.get("decision") or {}
    print(f"{decision.get('verdict')} of {decision.get('ring')} in {args.id} recorded as {decision.get('approver')} "
          f"(manifest {decision.get('manifestHash')}, decision {decision.get('decisionId')}); the rollout applies it "
          "if it still waits for this approval", file=out)


def _render_action(args: argparse.Namespace, answer: Any, out: TextIO) -> None:
    print(f"{answer.get('requested')} of {answer.get('id')} requested by {answer.get('by')}"
          + (f" (ring {answer.get('ring')})" if answer.get("ring") else ""), file=out)


RENDER: dict[str, Callable[[argparse.Namespace, Any, TextIO], None]] = {
    "list": _render_list, "show": _render_show, "start": _render_start, "dry-run": _render_start,
    "approve": _render_decision, "reject": _render_decision, "halt": _render_action, "resume": _render_action,
}
