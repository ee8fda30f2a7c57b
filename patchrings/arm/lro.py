"""One status check per activity: ARM long-running operations without poller threads.

Why: installPatches runs for up to hours, far longer than an activity may run, and an
``LROPoller`` starts polling in a daemon thread the moment it is created (contracts §3.4). So
the activities never call ``result()``. ``start_*`` passes :class:`OneShotARMPolling` (its
``run()`` returns at once, so the poller's thread ends immediately) and returns
``poller.continuation_token()``; ``poll_*`` resumes from that token with a fresh
:class:`OneShotARMPolling` and calls :func:`poll_once`, which performs exactly one status GET
(plus, on success, the final GET of ``Location`` that carries the result) using azure-core's own
LRO algorithms (Azure-AsyncOperation, Location, body), so the semantics match ``result()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.polling import LROPoller
from azure.core.polling.base_polling import BadResponse, BadStatus, OperationFailed
from azure.mgmt.core.polling.arm_polling import ARMPolling

from patchrings.arm.errors import error_info

__all__ = ["LroStep", "OneShotARMPolling", "poll_once", "to_wire"]


class _StillRunning(Exception):
    """Raised instead of sleeping between polls: the durable timer does the waiting."""


class OperationFailedError(HttpResponseError):
    """The operation itself ended Failed/Canceled (as opposed to a failed status *check*)."""


class OneShotARMPolling(ARMPolling):
    """ARMPolling that never polls on its own; :meth:`step` does one check on demand."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(timeout=1, **kwargs)

    def run(self) -> None:
        """Called by ``LROPoller`` in its thread: deliberately does nothing."""
        return None

    def _delay(self) -> None:
        raise _StillRunning

    def step(self) -> bool:
        """One status check (+ final GET on success). True when the operation has finished.

        Raises :class:`OperationFailedError` when the operation failed or was canceled (what
        ``result()`` would raise), and ``HttpResponseError`` when the status check itself got a
        bad answer (e.g. a 500 after the SDK's retries): that says nothing about the operation.
        ``LROBasePolling.run`` would mark the operation Failed on a bad check; this does not.
        """
        try:
            self._poll()
        except _StillRunning:
            return False
        except OperationFailed as err:
            raise OperationFailedError(response=self._pipeline_response.http_response, error=err) from err
        except (BadStatus, BadResponse) as err:
            response = self._pipeline_response.http_response
            raise HttpResponseError(response=response, message=str(err), error=err) from err
        return True


@dataclass(frozen=True)
class LroStep:
    """Outcome of one status check: ``done`` with a ``result`` dict, or an ``error`` dict."""

    done: bool
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None


def to_wire(model: Any) -> dict[str, Any] | None:
    """A model (TypeSpec or msrest) or mapping as its REST (camelCase) JSON dict."""
    if model is None:
        return None
    serialize = getattr(model, "serialize", None)
    if callable(serialize):
        return dict(serialize(keep_readonly=True))
    as_dict = getattr(model, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    return dict(model)


def poll_once(poller: LROPoller[Any]) -> LroStep:
    """One status check of a poller built with :class:`OneShotARMPolling`.

    A failed/canceled operation is ``done`` with an ``error``; transport and HTTP errors while
    checking are *not* done (``error`` set, ``retryable`` says whether to try again).
    """
    poller.wait()  # joins the poller's thread, which returned immediately
    method = poller.polling_method()
    if not isinstance(method, OneShotARMPolling):
        raise TypeError("poll_once needs a poller created with polling=OneShotARMPolling()")
    try:
        finished = method.step()
    except OperationFailedError as exc:
        return LroStep(True, method.status(), None, error_info(exc, code=_operation_code(exc)))
    except AzureError as exc:
        return LroStep(False, method.status(), None, error_info(exc))
    if not finished:
        return LroStep(False, method.status(), None, None)
    return LroStep(True, method.status(), to_wire(method.resource()), None)


def _operation_code(exc: HttpResponseError) -> str:
    """The ``error.code`` of a Failed/Canceled async-operation body, or a generic code."""
    try:
        body = json.loads(exc.response.text()) if exc.response is not None else {}
    except Exception:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return str(error["code"])
    status = body.get("status") if isinstance(body, dict) else None
    return f"Operation{status}" if status else "OperationFailed"
