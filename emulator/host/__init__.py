"""Local Azure Functions + Durable Functions host for Python v2-model apps (``func start`` stand-in).

Why it exists: Core Tools cannot be installed here (its binary comes from an unreachable
CDN), yet the app must run locally unmodified and the tests must exercise *real* Durable
replay. This package runs ``function_app.py`` through the same SDK entry points the Functions
host and Python worker use, following ``shared/reference/durable-host-protocol.md``.

Module map
----------
The app and its functions:

* ``indexing`` -- import ``function_app.py`` and index its functions as the worker does
  (:class:`AppIndex`, :class:`FunctionEntry`, the worker's own loader as a parity check).
* ``invocation`` -- call a trigger function (bindings in, ``func.Context``).
* ``triggers`` -- HTTP routes, Event Grid webhook, ``/admin/functions``, timer triggers.

The durable engine (:class:`~emulator.host.engine.DurableEngine`), split along its seams:

* ``engine`` -- ``DurableEngine`` assembled from the parts below; lifecycle (start, bounded
  stop), recovery after a restart (re-arm timers, re-run in-flight activities) and the
  scheduler (which instance runs next, batch delay while activities are in flight). Re-exports
  ``ACTIVE``, ``TERMINAL``, ``EngineError``, ``Instance``.
* ``instance`` -- the :class:`Instance` record (its ``meta()`` is the persisted row), the
  ``ACTIVE`` / ``TERMINAL`` statuses, :class:`EngineError` (code + HTTP status).
* ``core`` -- :class:`EngineCore`, the shared state and its primitives: inboxes and the ready
  set, durable timers, busy accounting for the clock, persistence and change watchers
  (``wait_changed``), forgetting an instance, and ``still_wanted`` -- the one "is this result
  still wanted" check (instance exists, same execution, task still pending, not ended) used by
  timers, activities, episodes and parent notification.
* ``replay`` -- :class:`Replay`: one episode (batching, the context JSON, the SDK handle on the
  orchestrator thread) and applying it (bookkeeping, retries, determinism check, scheduling
  actions, custom-status limit, completion / failure / continue-as-new, notifying a parent),
  processing a terminate message, failing an instance on a host error.
* ``client_ops`` -- :class:`ClientOps`: start, raise event, terminate, suspend, resume, purge,
  restart, get / require.
* ``activity_runner`` -- :class:`ActivityRunner`: the activity queue, worker tasks and thread
  pool, invoking an activity through the ``activityTrigger`` codec, failure text and stack; it
  reaches the engine only through :class:`ActivityHost`.
* ``history`` -- DTFx history events and timestamps; ``store`` -- SQLite persistence.

Around it: ``durable_api`` (the durable HTTP API and the client binding), ``sdk_session`` (one
SDK aiohttp session per event loop), ``server`` (:class:`FunctionsHost`), ``cli``
(``python -m emulator start``), ``testing`` (:class:`HostThread` for pytest).

SUPPORTED
---------
* Indexing as the worker does: the single ``FunctionRegister`` (``df.DFApp`` /
  ``func.FunctionApp``), blueprints, durable names from ``orchestration=``/``activity=`` or the
  function name, case-insensitive. Bindings: ``httpTrigger`` (+ ``http`` output),
  ``orchestrationTrigger``, ``activityTrigger``, ``eventGridTrigger``, ``timerTrigger``,
  ``durableClient``; anything else is refused at start naming the function and binding
  (error code ``HOST_INDEX``), as are sync functions with a durable client and timer schedules
  that are not 6-field NCRONTAB. Every function also goes through the Python worker's own loader
  (``azure_functions_runtime.functions.Registry.add_indexed_function``, PyPI
  ``azure-functions-runtime``): what the worker refuses (e.g. ``payload: dict[str, Any]``,
  ``-> None`` on an HTTP function) is refused with the worker's message, and one refused function
  refuses the whole app, as in Azure.
* ``host.json`` read first and checked as the Functions host's ``HostJsonFileConfigurationSource``
  does: no file or ``{}`` means ``{"version": "2.0"}``; comments are allowed; text that does not
  parse is refused with "Unable to parse host configuration file '<path>'."; a missing ``version``
  or one other than ``"2.0"`` is refused with the host's messages (error code ``HOST_CONFIG``).
  ``extensions.http.routePrefix`` and ``extensions.durableTask.maxConcurrentActivityFunctions`` /
  ``defaultVersion`` are honoured.
* ``local.settings.json`` ``Values`` loaded into ``os.environ`` before the import, explicit
  settings on top; ``%NAME%`` references in timer schedules.
* Orchestration versioning: ``version`` on start (``?version=``, SDK ``start_new(..., version=)``)
  and on sub-orchestrations (the action's ``version``), ``defaultVersion`` from host.json for
  both when none is given; the version is the ``ExecutionStarted`` / ``SubOrchestrationInstance
  Created`` ``Version``, so ``context.version`` is right; kept across ``continue_as_new``.
* Orchestrators through the SDK's ``Orchestrator`` handle with the context JSON (schema V3,
  ``maximumShortTimerDuration`` 6 d / ``longRunningTimerIntervalDuration`` 3 d as on Azure
  Storage): activities (sync in a thread pool, async awaited), ``call_activity_with_retry`` and
  ``call_sub_orchestrator_with_retry`` emulated host-side like the current DTFx
  ``RetryInterceptor`` (Azure/durabletask PR #661: a retry timer after every failed attempt but
  the last; after the last one a "dummy timer for back-compat" at the current time, so the task
  fails at once; the SDK's ``RetryAbleTask`` waits for that timer; retry-allocating events
  delivered alone), timers incl. long timers, ``task_all``/``task_any``, external events
  (buffered by the SDK), sub-orchestrations with explicit or default ids
  (``<executionId>:<sequence id>``), ``continue_as_new``, custom status (over 16 KB, UTF-16 bytes
  of its JSON truncated to whole KB as the extension's ``MessagePayloadDataConverter`` does, fails
  the orchestration with the extension's message), failures in the real
  text format, completion held while un-cancelled timers or in-flight tasks remain,
  non-determinism detection (replayed action prefix compared with the previous one).
* Batching: completions are delivered together, and an instance with activities still queued
  or running waits for them (up to ``max_batch_delay``, 2 real seconds by default), so a
  fan-out of N costs 2 episodes and O(N) replayed events (see ``bench/bench_replay.py``).
* Durable HTTP API at ``/durabletask/`` (``rpcBaseUrl``) and ``/runtime/webhooks/durabletask/``:
  start (202 + ``Location``; 400 ``ExceptionMessage`` for an unknown orchestrator or an instance
  id the extension's ``DurableClient.StartNewAsync`` refuses: starting with ``@``, containing
  ``/ \\ # ?`` or control characters, longer than 256 characters, with the extension's texts),
  raise event (202/404/410/400), status with ``showInput``/``showHistory``/
  ``showHistoryOutput`` (200 terminal, 202 running, **404 with an empty body** when unknown),
  list/filter, terminate (asynchronous as in DTFx: an ``ExecutionTerminated`` message the
  scheduler processes, so a status read right after the call may still show Running),
  suspend/resume, restart, purge (one or by filter).
* Triggers: HTTP under ``/api/`` (prefix and literal segments matched ignoring case, as ASP.NET
  routing does: ``/API/HttpTrigger`` works; route templates with optional, constrained and catch-all
  parameters, methods, auth levels: FUNCTION = ``code`` query or ``x-functions-key`` header
  with the function or master key, ADMIN = master key); Event Grid at
  ``/runtime/webhooks/eventgrid?functionName=NAME`` (Event Grid schema arrays, CloudEvents
  single or batch, one invocation per event, SubscriptionValidation answered 200
  ``{"validationResponse": code}``, CloudEvents ``OPTIONS`` handshake); timer triggers
  (NCRONTAB with seconds, ``runOnStartup``, ``past_due``); ``POST /admin/functions/{name}``
  for timer and Event Grid functions (master key only, 401 otherwise, as on Azure).
* Keys: ``function_key`` argument, else ``FUNCTIONS_KEY``, else generated; master key from
  ``FUNCTIONS_MASTER_KEY`` or generated; system keys ``durabletask_extension`` and
  ``eventgrid_extension`` from ``FUNCTIONS_SYSTEM_KEY_<NAME>`` (e.g.
  ``FUNCTIONS_SYSTEM_KEY_EVENTGRID_EXTENSION``), else derived from the function key
  (``server.system_key(function_key, name)``, so the platform can rebuild webhook URLs across host
  restarts). As on Azure, ``/runtime/webhooks/durabletask/...`` and
  ``/runtime/webhooks/eventgrid`` are system-level: the extension's system key or the master key
  as ``code=`` or ``x-functions-key``, else 401 (a function key is refused). The client binding,
  check-status links and ``eventgrid_url()`` carry the right key. ``/durabletask/`` (the SDK's
  ``rpcBaseUrl``, localhost-only on Azure) takes no key.
* Persistence in SQLite (``:memory:`` for tests, ``<app>/.local/durable.sqlite`` by default):
  history rows, inbox rows and instance metadata are committed per episode; after a SIGKILL
  the host reloads instances, re-arms timers and re-runs activities that were in flight
  (at-least-once, as in Azure).
* The shared clock: every timestamp from ``clock.now()``, durable timers and timer triggers
  wait through ``clock.sleep_until``, queued/running work holds ``clock.busy()`` from the moment
  it is enqueued until its result is committed, HTTP requests via ``busy_middleware``.
* Clock control over HTTP: the shared clock's routes (``emulator.clock_http``: ``GET
  /admin/clock``, leases, ``advance``) are mounted on the host, and ``GET
  /admin/instances/{id}/wait?after=<lastUpdatedTime>&lease=<leaseId>&timeout=<s, max 60>``
  long-polls an instance: it answers with the durable status body once ``lastUpdatedTime`` is
  later than ``after`` (second precision; pass the ``X-Last-Updated`` header back for
  microseconds), the instance is terminal, or the timeout passes, and while it waits the
  caller's lease is suspended so a ``skip`` clock may jump (Temporal's time-skipping model).
* Logs (logger ``emulator.host``): one line per function execution with instance id,
  function name, duration and outcome.

Reproduced surprises of the real platform
-----------------------------------------
* **Double-encoded payloads.** ``start_new`` and ``raise_event`` bodies are JSON-encoded twice
  by the Python client; the host re-serialises the body like Newtonsoft, so an orchestrator
  waiting on an event raised by the Python client receives ``json.dumps(data)`` (a ``str``),
  while a raw JSON POST to ``sendEventPostUri`` delivers the object (DF Python issue #295).
* **Running while an un-cancelled timer is open.** An orchestrator that returns (or raises)
  while a timer, activity or sub-orchestration is still open stays ``Running`` until those
  complete, then completes/fails on the replay (DTFx ``HasOpenTasks``). A forgotten 24 h
  timeout therefore keeps an instance Running for 24 h.
* **Failure text.** Activities fail as ``"Activity function 'X' failed: <Type>: <message>"``
  with ``Result: Failure / Exception / Stack`` details; the orchestrator sees
  ``"{Reason} \\n {Details}"``; a failed instance's output is
  ``"Orchestrator function '<name>' failed: <error>"`` and a parent catching a child's failure
  sees that text.
* Long timers are split by the SDK: with the 6 d / 3 d settings a 10-day sleep becomes
  timers of 3 d, 3 d and 4 d (SDK 1.7.0 ``LongTimerTask`` arithmetic; the reference's
  "3+3+3+1" needs a 3 d short-timer limit and is not what 1.7.0 computes with 6 d).
* Events raised while an instance is Suspended are kept and delivered after resume.

LIMITATIONS
-----------
* No entities (``entityTrigger`` is refused; ``call_entity``/``signal_entity`` fail the
  instance with a clear message), no ``call_http``, no rewind (501), no
  ``createAndWait`` URL, no task hubs/connections (accepted and ignored), no
  ``functionTimeout`` emulation, no concurrency throttles beyond the activity pool
  (16 workers by default).
* Only the bindings listed above; no queue/blob/table/service-bus bindings.
* Versioning stops at assigning versions: ``versionMatchStrategy`` / ``versionFailureStrategy``
  (which versions a worker may run, and what happens to others) are not emulated; an instance of
  any version runs. The Durable HTTP API paths themselves are matched case-sensitively.
* Other host.json settings (``functionTimeout``, logging, hub name, storage provider, ...) are
  read but not applied.
* A terminated sub-orchestration does not notify its parent (the parent waits).
* Instance purge removes any instance, running ones included (their timers are cancelled).
* One episode runs at a time (one orchestrator thread); fine for local runs and tests.
* ``skip`` time cannot move while an HTTP request is being served, so an HTTP function that
  waits for an orchestration needing a timer (e.g.
  ``wait_for_completion_or_create_check_status_response``) just times out in real time.
* Settings are process environment variables (as in a worker process): hosts running at the
  same time in one process share them; each host restores what it changed when it stops.
* The app module is imported into the host process; two hosts in one process must not run
  apps whose modules share names (``function_app`` itself is re-imported each start).
* The SDK client's module-global aiohttp session is replaced by one session per event loop
  (``sdk_session``), so several hosts can run in one process; a host closes its loop's
  session on stop.
* ``/admin`` calls need no key, as with ``func start`` (on Azure they need the master key).
* A host following another process's clock (``RemoteClock``) mounts that follower's clock: a lease
  taken there, or suspended by the long-poll there, does not reach the time authority; hold and
  suspend leases on the authority (the platform's clock server) instead.
* ``/durabletask/`` (the rpc endpoint) answers anyone who can reach 127.0.0.1, where on Azure it
  is reachable from inside the app's sandbox only.
"""
