"""A local Event Grid custom topic (CloudEvents 1.0 input schema) that records what is published.

The app's ``notify`` activity publishes with azure-eventgrid's ``EventGridPublisherClient``
exactly as it does in Azure; on the local platform ``PATCHRINGS_NOTIFY_TOPIC_ENDPOINT`` points here
(:class:`EventGridTopic`, started by :mod:`emulator.platform`, base URL ``platform.eventgrid_url``).

Sources: the data-plane contract ``specification/eventgrid/data-plane/Microsoft.EventGrid/stable/
2018-01-01/EventGrid.json`` in Azure/azure-rest-api-specs (``POST /api/events?overload=cloudEvent``,
consumes ``application/cloudevents-batch+json; charset=utf-8``, ``CloudEventEvent`` requires
``id``, ``source``, ``type``, ``specversion``; ``api-version`` query parameter required), and
MicrosoftDocs/azure-docs ``articles/event-grid/post-to-custom-topic.md`` (200 on success, 400
"Event data has incorrect format", 401 "Invalid access key", 404 "Incorrect endpoint", 413
"Array or event exceeds size limits" with the array limited to 1 MB; error body
``{"error": {"code", "message", "details": [{"code", "message"}]}}``; key auth in the
``aeg-sas-key`` header). /work/shared/contracts/eventgrid has the CloudEvents-schema examples the
topic's events look like (Maintenance events there; ours are ``PatchRings.*``).

SUPPORTED
    * ``POST /api/events?api-version=2018-01-01`` with ``Content-Type:
      application/cloudevents-batch+json`` (a JSON array; charset optional) or
      ``application/cloudevents+json`` (one event, structured mode); answers 200 with an empty body.
    * Auth: ``Authorization: Bearer <token>`` for a token the topic was given (the platform gives it
      the simulator's static token, which the app sends locally), or ``aeg-sas-key: <key>`` when a
      key is configured (``local_auth=True``). Otherwise 401.
    * Validation of every event before any is recorded (a batch is all or nothing): an object with
      non-empty string ``id``, ``source``, ``type``, ``specversion`` = ``"1.0"``, optional string
      ``subject``/``datacontenttype``/``dataschema``, an RFC 3339 ``time``, not both ``data`` and
      ``data_base64`` -> 400 in Event Grid's error shape (``BadRequest`` / ``InputJsonInvalid``).
      A missing or unknown ``api-version`` -> 400; a body that is not JSON -> 400; another
      content type (e.g. Event Grid schema ``application/json``) -> 400, since the topic's input
      schema is CloudEvents; a batch over 1 MB (1,048,576 bytes) or an event over 1 MB -> 413.
    * Any other path -> 404; another method on ``/api/events`` -> 405.
    * ``GET /_sim/events`` -> ``{"events": [CloudEvent JSON, ...]}`` in publish order, every
      accepted POST recorded (so an at-least-once re-publish appears twice);
      ``?dedupe=true`` keeps the first of each ``(source, id)`` (what a receiver that dedupes
      sees); ``?type=...`` / ``?source=...`` filter. ``DELETE /_sim/events`` clears them.
    * ``POST /_sim/faults`` ``{"mode": "status", "status": 503, "count": 1}`` answers the next
      POSTs with that status (nothing recorded); ``{"mode": "accept-then-drop", "count": 1}``
      records the batch and then drops the connection without an answer (the publisher sees a
      connection error and retries: the same event arrives twice). ``DELETE /_sim/faults`` clears.
    * HTTPS with a CA generated at start (``ca.pem`` in the state folder,
      :func:`emulator.arm.tls.make_server_context`): the SDK refuses bearer tokens over plain HTTP.

LIMITATIONS
    * One topic per server; no event subscriptions, filtering, delivery or retries to handlers
      (read what was published with ``/_sim/events``); no dead-lettering.
    * Bearer tokens are compared to the configured list: no JWT validation, audience
      (``https://eventgrid.azure.net``) or "EventGrid Data Sender" role check.
      ``aeg-sas-token`` (SAS tokens) is not supported.
    * Error ``message`` texts are ours (Event Grid's wording and tracking ids are not reproduced);
      status codes and the error body's shape follow the docs above.
    * No Event Grid schema or custom schema topics, no ``aeg-channel-name`` partner routing, no
      throttling (429) unless injected with ``/_sim/faults``.
    * Events are kept in memory (lost on stop).
"""

from emulator.eventgrid.server import EventGridTopic

__all__ = ["EventGridTopic"]
