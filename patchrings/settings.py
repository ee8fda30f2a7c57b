"""The settings model: every ``PATCHRINGS_*`` app setting, read and validated in one place.

Why one model: the app runs unchanged in Azure and on the local platform, and the *only*
difference between the two is these settings (ARM endpoint, credential kind, CA bundle, ledger
storage). Reading them anywhere else would let a typo silently fall back to a default, so
:meth:`Settings.from_env` refuses unknown ``PATCHRINGS_*`` keys and missing/malformed required
ones, naming every offending key and what is allowed, all at once (one fix pass, not one per
restart).

:data:`SETTINGS_SPEC` is the machine-readable list the infra tests compare against
``infra/app-settings.json`` and ``local.settings.sample.json``; :func:`describe` renders it for
people. ``python -m patchrings.settings --check`` validates ``local.settings.json`` (what
``func start`` reads) with the same rules, exit status 0 or 1.

Two App Service variables are read too (never set by us): ``WEBSITE_AUTH_ENABLED`` (App Service
authentication is on, so ``X-MS-CLIENT-PRINCIPAL`` can be trusted) and ``WEBSITE_INSTANCE_ID`` /
``WEBSITE_SITE_NAME`` (hosted in Azure, so the local approver header fallback is ignored), and
``WEBSITE_HOSTNAME`` (the app's host name: the base of absolute links when
``PATCHRINGS_PUBLIC_BASE_URL`` is unset).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from patchrings.errors import SettingsInvalid

__all__ = ["PREFIX", "SETTINGS_SPEC", "SettingSpec", "Settings", "describe"]

PREFIX = "PATCHRINGS_"
APP_DIR = Path(__file__).resolve().parent.parent

ARM_AUTH_MANAGED_IDENTITY = "managed-identity"
ARM_AUTH_STATIC_TOKEN = "static-token"
ARM_AUTH_KINDS = (ARM_AUTH_MANAGED_IDENTITY, ARM_AUTH_STATIC_TOKEN)
PUBLIC_ARM_ENDPOINT = "https://management.azure.com"

# Azure Table names: 3-63 alphanumerics starting with a letter. The longest suffix the ledger
# appends is "Approvals"/"Rollouts"/"VmResults"/"RingRuns"/"Installs" (9 chars), so the prefix
# may take at most 54.
_TABLE_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,53}$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no", ""})


@dataclass(frozen=True)
class SettingSpec:
    """One app setting: whether it must be set, its default, and its value in each environment.

    ``azure_value`` / ``local_value`` are what Azure (infra) and the local platform set; ``None``
    means "not set there". Values in angle brackets are placeholders filled at deploy/run time.
    """

    name: str
    required: bool
    default: str | None
    doc: str
    azure_value: str | None
    local_value: str | None


SETTINGS_SPEC: list[SettingSpec] = [
    SettingSpec(
        "PATCHRINGS_PLAN_PATH", False, "plans/default.json",
        "Rollout plan file (JSON), relative to the app folder.",
        "plans/default.json", "plans/default.json",
    ),
    SettingSpec(
        "PATCHRINGS_ARM_ENDPOINT", False, PUBLIC_ARM_ENDPOINT,
        "ARM base URL (https). The public cloud in Azure; the ARM simulator's URL locally.",
        PUBLIC_ARM_ENDPOINT, "https://127.0.0.1:<simulator port>",
    ),
    SettingSpec(
        "PATCHRINGS_ARM_AUTH", False, ARM_AUTH_MANAGED_IDENTITY,
        "How ARM calls authenticate: 'managed-identity' (DefaultAzureCredential) or "
        "'static-token' (PATCHRINGS_ARM_STATIC_TOKEN as the bearer token, local only).",
        ARM_AUTH_MANAGED_IDENTITY, ARM_AUTH_STATIC_TOKEN,
    ),
    SettingSpec(
        "PATCHRINGS_ARM_STATIC_TOKEN", False, None,
        "Bearer token sent to ARM when PATCHRINGS_ARM_AUTH=static-token (the simulator's token).",
        None, "<simulator token>",
    ),
    SettingSpec(
        "PATCHRINGS_ARM_CA_BUNDLE", False, None,
        "PEM file of extra CAs to trust for ARM calls (the simulator's local CA); relative paths "
        "are taken from the app folder. Unset in Azure: the system trust store is used.",
        None, "<state dir>/arm/ca.pem",
    ),
    SettingSpec(
        "PATCHRINGS_LEDGER_CONNECTION", False, None,
        "Table storage connection string for the ledger (Azurite locally). Set exactly one of "
        "this and PATCHRINGS_LEDGER_ACCOUNT_URL.",
        None, "<Azurite connection string>",
    ),
    SettingSpec(
        "PATCHRINGS_LEDGER_ACCOUNT_URL", False, None,
        "Table endpoint reached with the managed identity (no keys in settings), e.g. "
        "https://<account>.table.core.windows.net. Set exactly one of this and "
        "PATCHRINGS_LEDGER_CONNECTION.",
        "https://<storage account>.table.core.windows.net", None,
    ),
    SettingSpec(
        "PATCHRINGS_LEDGER_TABLE_PREFIX", False, "patchrings",
        "Prefix of the ledger's table names (letters and digits, starting with a letter).",
        "patchrings", "patchrings",
    ),
    SettingSpec(
        "PATCHRINGS_APPROVER_HEADER_FALLBACK", False, "false",
        "'true' lets the X-PatchRings-Approver header name the approver when no "
        "X-MS-CLIENT-PRINCIPAL header is present. Local use only: never enable it in Azure.",
        "false", "true",
    ),
    SettingSpec(
        "PATCHRINGS_INLINE_PLANS", False, "false",
        "'true' lets POST /api/rollouts carry its own plan, which may then only restrict the "
        "deployed plan (same rings in order, members, patching, approvals, health, promotion; "
        "approvers a subset). Off by default; never enable it in Azure.",
        None, None,
    ),
    SettingSpec(
        "PATCHRINGS_NOTIFY_WEBHOOK", False, None,
        "Optional http(s) URL (Teams/Slack incoming webhook, Logic App, ...) the notify activity "
        "POSTs alerts to (a cancel that could not land, ...); best effort, never blocks a rollout. "
        "Alerts are always logged at error level.",
        None, None,
    ),
    SettingSpec(
        "PATCHRINGS_NOTIFY_TOPIC_ENDPOINT", False, None,
        "Optional https endpoint of the Event Grid custom topic (CloudEvents 1.0 input schema) the "
        "notify activity publishes to, e.g. https://<topic>.<region>-1.eventgrid.azure.net/api/events; "
        "the app's managed identity needs 'EventGrid Data Sender' on it. Unset: notifications are "
        "only logged (and posted to PATCHRINGS_NOTIFY_WEBHOOK if set). Not in "
        "local.settings.sample.json: the local platform sets it to its topic emulator.",
        "https://<topic>.<region>-1.eventgrid.azure.net/api/events", None,
    ),
    SettingSpec(
        "PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE", False, None,
        "PEM file of extra CAs to trust for the Event Grid topic (the local topic emulator's CA); "
        "relative paths are taken from the app folder. Local only: the local platform sets it; "
        "unset in Azure (the system trust store is used).",
        None, None,
    ),
    SettingSpec(
        "PATCHRINGS_PUBLIC_BASE_URL", False, None,
        "Optional http(s) base URL of the app as people reach it, for absolute links (the operator "
        "page link in notifications). Unset in Azure: https://$WEBSITE_HOSTNAME is used. The local "
        "platform sets it to the host's URL.",
        None, None,
    ),
]

_SPEC_BY_NAME = {spec.name: spec for spec in SETTINGS_SPEC}


def describe() -> str:
    """Human-readable list of every setting with its doc, default and per-environment values."""
    lines = []
    for spec in SETTINGS_SPEC:
        need = "required" if spec.required else f"default {spec.default!r}"
        lines.append(f"{spec.name} ({need})")
        lines.append(f"    {spec.doc}")
        lines.append(f"    Azure: {spec.azure_value or '-'}    local: {spec.local_value or '-'}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Settings:
    """Validated app settings. Secrets are kept out of ``repr`` so logs never show them."""

    plan_path: str = "plans/default.json"
    arm_endpoint: str = PUBLIC_ARM_ENDPOINT
    arm_auth: str = ARM_AUTH_MANAGED_IDENTITY
    arm_static_token: str | None = field(default=None, repr=False)
    arm_ca_bundle: str | None = None
    ledger_connection: str | None = field(default=None, repr=False)
    ledger_account_url: str | None = None
    ledger_table_prefix: str = "patchrings"
    approver_header_fallback: bool = False
    inline_plans: bool = False
    notify_webhook: str | None = field(default=None, repr=False)  # may carry a secret in its query
    notify_topic_endpoint: str | None = None
    notify_topic_ca_bundle: str | None = None
    public_base_url: str | None = None
    #: ``WEBSITE_HOSTNAME`` (App Service sets it to the app's default host name): the base of
    #: absolute links when ``PATCHRINGS_PUBLIC_BASE_URL`` is unset.
    website_hostname: str | None = None
    #: App Service authentication (Easy Auth) is on: App Service sets ``WEBSITE_AUTH_ENABLED=True``
    #: and then strips/replaces client-sent ``X-MS-CLIENT-PRINCIPAL*`` headers. Only then are they
    #: trusted (Microsoft.Identity.Web ``AppServicesAuthenticationInformation``).
    platform_auth_enabled: bool = False
    #: Running on App Service / Functions in Azure (``WEBSITE_INSTANCE_ID`` or ``WEBSITE_SITE_NAME``
    #: set): the local approver header fallback is then ignored whatever its setting says.
    hosted_in_azure: bool = False
    app_dir: Path = APP_DIR

    @staticmethod
    def describe() -> str:
        """Every setting with its doc (same as the module-level :func:`describe`)."""
        return describe()

    @property
    def plan_file(self) -> Path:
        """Absolute path of the plan file (relative paths are taken from the app folder)."""
        path = Path(self.plan_path)
        return path if path.is_absolute() else self.app_dir / path

    @property
    def header_fallback_allowed(self) -> bool:
        """The local ``X-PatchRings-Approver`` fallback counts: enabled, local and no Easy Auth."""
        return self.approver_header_fallback and not self.hosted_in_azure and not self.platform_auth_enabled

    @property
    def link_base_url(self) -> str | None:
        """Base URL of absolute links to the app (no trailing slash): ``PATCHRINGS_PUBLIC_BASE_URL``,
        else ``https://$WEBSITE_HOSTNAME`` in Azure, else ``None`` (links stay relative)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        if self.website_hostname:
            return f"https://{self.website_hostname.strip().rstrip('/')}"
        return None

    @property
    def is_public_azure(self) -> bool:
        """True when ARM calls go to the public Azure endpoint."""
        return self.arm_endpoint.rstrip("/").lower() == PUBLIC_ARM_ENDPOINT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, app_dir: Path | None = None) -> Settings:
        """Read and validate the ``PATCHRINGS_*`` settings; raise :class:`SettingsInvalid` listing
        every problem (``details`` = ``[{"setting", "message"}]``)."""
        source = os.environ if env is None else env
        base = app_dir or APP_DIR
        values = {k: v.strip() for k, v in source.items() if k.upper().startswith(PREFIX)}
        problems: list[dict[str, str]] = []

        def bad(name: str, message: str) -> None:
            problems.append({"setting": name, "message": message})

        for key in sorted(values):
            if key not in _SPEC_BY_NAME:
                hint = _closest(key)
                bad(key, "unknown setting" + (f" (did you mean {hint}?)" if hint else "")
                    + "; allowed: " + ", ".join(_SPEC_BY_NAME))

        def get(name: str) -> str | None:
            value = values.get(name)
            if value:
                return value
            spec = _SPEC_BY_NAME[name]
            if spec.required:
                bad(name, f"missing: {spec.doc}")
            return spec.default

        plan_path = get("PATCHRINGS_PLAN_PATH") or "plans/default.json"
        plan_file = Path(plan_path) if Path(plan_path).is_absolute() else base / plan_path
        if not plan_file.is_file():
            bad("PATCHRINGS_PLAN_PATH", f"no plan file at {plan_file} (paths are relative to {base})")

        arm_endpoint = (get("PATCHRINGS_ARM_ENDPOINT") or PUBLIC_ARM_ENDPOINT).rstrip("/")
        parsed = urlparse(arm_endpoint)
        if parsed.scheme != "https" or not parsed.netloc:
            bad("PATCHRINGS_ARM_ENDPOINT",
                f"{arm_endpoint!r} is not an https URL (bearer tokens are only sent over TLS); "
                f"allowed: https://host[:port], e.g. {PUBLIC_ARM_ENDPOINT}")

        arm_auth = (get("PATCHRINGS_ARM_AUTH") or ARM_AUTH_MANAGED_IDENTITY).lower()
        if arm_auth not in ARM_AUTH_KINDS:
            bad("PATCHRINGS_ARM_AUTH", f"{arm_auth!r} is not allowed; allowed: {', '.join(ARM_AUTH_KINDS)}")
        token = get("PATCHRINGS_ARM_STATIC_TOKEN")
        if arm_auth == ARM_AUTH_STATIC_TOKEN and not token:
            bad("PATCHRINGS_ARM_STATIC_TOKEN", "missing: required when PATCHRINGS_ARM_AUTH=static-token")
        if arm_auth == ARM_AUTH_MANAGED_IDENTITY and token:
            bad("PATCHRINGS_ARM_STATIC_TOKEN",
                "set while PATCHRINGS_ARM_AUTH=managed-identity; remove it or use static-token")

        ca_bundle = get("PATCHRINGS_ARM_CA_BUNDLE")
        if ca_bundle:
            ca_file = Path(ca_bundle) if Path(ca_bundle).is_absolute() else base / ca_bundle
            if not ca_file.is_file():
                bad("PATCHRINGS_ARM_CA_BUNDLE", f"no CA file at {ca_file}")
            ca_bundle = str(ca_file)

        connection = get("PATCHRINGS_LEDGER_CONNECTION")
        account_url = get("PATCHRINGS_LEDGER_ACCOUNT_URL")
        if bool(connection) == bool(account_url):
            what = "both are set" if connection else "neither is set"
            for name in ("PATCHRINGS_LEDGER_CONNECTION", "PATCHRINGS_LEDGER_ACCOUNT_URL"):
                bad(name, f"set exactly one of PATCHRINGS_LEDGER_CONNECTION (connection string) and "
                          f"PATCHRINGS_LEDGER_ACCOUNT_URL (https Table endpoint): {what}")
        if connection and "=" not in connection:
            bad("PATCHRINGS_LEDGER_CONNECTION",
                "not a connection string; expected 'Key=Value;...' (e.g. AccountName=...;TableEndpoint=...)")
        if account_url and urlparse(account_url).scheme != "https":
            bad("PATCHRINGS_LEDGER_ACCOUNT_URL",
                f"{account_url!r} is not an https URL; expected https://<account>.table.core.windows.net")

        prefix = get("PATCHRINGS_LEDGER_TABLE_PREFIX") or "patchrings"
        if not _TABLE_PREFIX.match(prefix):
            bad("PATCHRINGS_LEDGER_TABLE_PREFIX",
                f"{prefix!r} is not allowed; allowed: 1-54 letters/digits starting with a letter")

        fallback_text = (get("PATCHRINGS_APPROVER_HEADER_FALLBACK") or "false").lower()
        if fallback_text not in _TRUE | _FALSE:
            bad("PATCHRINGS_APPROVER_HEADER_FALLBACK",
                f"{fallback_text!r} is not allowed; allowed: true, false")

        inline_text = (get("PATCHRINGS_INLINE_PLANS") or "false").lower()
        if inline_text not in _TRUE | _FALSE:
            bad("PATCHRINGS_INLINE_PLANS", f"{inline_text!r} is not allowed; allowed: true, false")

        notify_webhook = get("PATCHRINGS_NOTIFY_WEBHOOK")
        if notify_webhook and (urlparse(notify_webhook).scheme not in ("http", "https")
                               or not urlparse(notify_webhook).netloc):
            bad("PATCHRINGS_NOTIFY_WEBHOOK", "not an http(s) URL; expected e.g. https://example.webhook.office.com/...")

        topic = get("PATCHRINGS_NOTIFY_TOPIC_ENDPOINT")
        if topic:
            parts = urlparse(topic)
            if parts.scheme != "https" or not parts.netloc or "@" in parts.netloc \
                    or parts.query or parts.fragment:
                bad("PATCHRINGS_NOTIFY_TOPIC_ENDPOINT",
                    f"{topic!r} is not an https URL without user info, query or fragment (bearer tokens "
                    "are only sent over TLS); expected https://<topic>.<region>-1.eventgrid.azure.net/api/events")

        topic_ca = get("PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE")
        if topic_ca:
            topic_ca_file = Path(topic_ca) if Path(topic_ca).is_absolute() else base / topic_ca
            if not topic_ca_file.is_file():
                bad("PATCHRINGS_NOTIFY_TOPIC_CA_BUNDLE", f"no CA file at {topic_ca_file}")
            topic_ca = str(topic_ca_file)

        public_base = get("PATCHRINGS_PUBLIC_BASE_URL")
        if public_base:
            parts = urlparse(public_base)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment \
                    or "@" in parts.netloc:
                bad("PATCHRINGS_PUBLIC_BASE_URL",
                    f"{public_base!r} is not an http(s) base URL; expected e.g. https://<app>.azurewebsites.net")

        if problems:
            names = ", ".join(dict.fromkeys(p["setting"] for p in problems))
            lines = "; ".join(f"{p['setting']}: {p['message']}" for p in problems)
            raise SettingsInvalid(f"invalid app settings ({names}): {lines}",
                                  field=problems[0]["setting"], details=problems)
        return cls(
            plan_path=plan_path,
            arm_endpoint=arm_endpoint,
            arm_auth=arm_auth,
            arm_static_token=token,
            arm_ca_bundle=ca_bundle,
            ledger_connection=connection,
            ledger_account_url=account_url,
            ledger_table_prefix=prefix,
            approver_header_fallback=fallback_text in _TRUE,
            inline_plans=inline_text in _TRUE,
            notify_webhook=notify_webhook or None,
            notify_topic_endpoint=topic or None,
            notify_topic_ca_bundle=topic_ca or None,
            public_base_url=(public_base or "").rstrip("/") or None,
            website_hostname=str(source.get("WEBSITE_HOSTNAME", "")).strip() or None,
            platform_auth_enabled=platform_auth_enabled(source),
            hosted_in_azure=hosted_in_azure(source),
            app_dir=base,
        )


#: Environment variables App Service sets; read with the PATCHRINGS_* ones (not app settings of ours).
PLATFORM_VARIABLES = ("WEBSITE_AUTH_ENABLED", "WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME", "WEBSITE_HOSTNAME")


def platform_auth_enabled(env: Mapping[str, str]) -> bool:
    """``WEBSITE_AUTH_ENABLED`` equals ``True`` (case-insensitive), as App Service sets it when
    authentication is on (the check Microsoft.Identity.Web makes)."""
    return str(env.get("WEBSITE_AUTH_ENABLED", "")).strip().lower() == "true"


def hosted_in_azure(env: Mapping[str, str]) -> bool:
    return any(str(env.get(name, "")).strip() for name in ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME"))


def _closest(key: str) -> str | None:
    """The known setting a mistyped key most likely meant (shared-prefix heuristic)."""
    import difflib

    match = difflib.get_close_matches(key.upper(), list(_SPEC_BY_NAME), n=1, cutoff=0.75)
    return match[0] if match else None


LOCAL_SETTINGS = "local.settings.json"


def check_local_settings(path: Path) -> list[str]:
    """Every problem of a ``local.settings.json`` (Core Tools' format), as readable lines.

    Reads ``Values`` and validates the ``PATCHRINGS_*`` keys with :meth:`Settings.from_env`
    (relative paths taken from the file's folder, as ``func start`` runs there), plus what Core
    Tools itself needs to run a Python app: ``IsEncrypted: false``, string values,
    ``FUNCTIONS_WORKER_RUNTIME=python`` and an ``AzureWebJobsStorage`` connection.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"{path}: not found (copy local.settings.sample.json to {LOCAL_SETTINGS})"]
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        return [f"{path}: not readable JSON: {err}"]
    if not isinstance(doc, dict):
        return [f"{path}: must be a JSON object with a Values object"]
    problems: list[str] = []
    if doc.get("IsEncrypted") not in (False, None):
        problems.append("IsEncrypted: must be false (encrypted values cannot be checked or used by the app)")
    values = doc.get("Values")
    if not isinstance(values, dict):
        return [*problems, "Values: missing or not an object"]
    strings: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(value, str):
            problems.append(f"Values.{key}: must be a string (got {type(value).__name__})")
        else:
            strings[str(key)] = value
    if strings.get("FUNCTIONS_WORKER_RUNTIME", "").strip().lower() != "python":
        problems.append("Values.FUNCTIONS_WORKER_RUNTIME: must be 'python'")
    if not strings.get("AzureWebJobsStorage", "").strip():
        problems.append("Values.AzureWebJobsStorage: missing (Durable Functions needs storage: "
                        "'UseDevelopmentStorage=true' with Azurite)")
    try:
        Settings.from_env(strings, app_dir=path.resolve().parent)
    except SettingsInvalid as err:
        problems.extend(f"Values.{p['setting']}: {p['message']}" for p in err.details or [])
    return problems


def main(argv: list[str] | None = None) -> int:
    """``python -m patchrings.settings [--check [FILE] | --check --env]``.

    No option: print every setting. ``--check``: validate ``local.settings.json`` (or FILE);
    ``--check --env``: validate the process environment (what the app reads at run time).
    Exit status 0 when valid, 1 with one readable line per problem on stderr.
    """
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] != ["--check"]:
        if args:
            print("usage: python -m patchrings.settings [--check [FILE] | --check --env]", file=sys.stderr)
            return 1
        print(describe())
        return 0
    rest = args[1:]
    if rest == ["--env"]:
        try:
            settings = Settings.from_env()
        except SettingsInvalid as err:
            for problem in err.details or []:
                print(f"{problem['setting']}: {problem['message']}", file=sys.stderr)
            return 1
        print(f"settings OK: ARM {settings.arm_endpoint} ({settings.arm_auth}), "
              f"ledger {'connection string' if settings.ledger_connection else settings.ledger_account_url}")
        return 0
    if len(rest) > 1 or (rest and rest[0].startswith("-")):
        print("usage: python -m patchrings.settings --check [FILE] | --check --env", file=sys.stderr)
        return 1
    path = Path(rest[0]) if rest else Path.cwd() / LOCAL_SETTINGS
    problems = check_local_settings(path)
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
