"""Structured events: one per request (and per failure), to hooks and stdlib logging.

No prompt or completion text is ever put in an event. Hooks are plain callables;
a hook that returns an awaitable is scheduled on the running loop.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from policyrouter.types import Result

if TYPE_CHECKING:
    import asyncio

EVENTS = ("attempt", "result", "error", "budget_soft_limit", "breaker_open")

log = logging.getLogger("policyrouter.events")
_pending: set[asyncio.Task[Any]] = set()  # strong refs so scheduled hooks are not collected


class EventBus:
    __slots__ = ("_hooks",)

    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}

    def on(self, event: str, fn: Callable[[dict[str, Any]], Any]) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {', '.join(EVENTS)}")
        self._hooks.setdefault(event, []).append(fn)

    def active(self, event: str) -> bool:
        return event in self._hooks or log.isEnabledFor(logging.INFO)

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        payload = {"event": event, **payload}
        if log.isEnabledFor(logging.INFO):
            log.info("policyrouter.%s", event, extra={"policyrouter": payload})
        for fn in self._hooks.get(event, ()):
            out = fn(payload)
            if inspect.isawaitable(out):
                _schedule(out)

    def emit_result(self, result: Result) -> None:
        if not ("result" in self._hooks or "attempt" in self._hooks or log.isEnabledFor(logging.INFO)):
            return
        payload = result.to_dict()
        payload.pop("text", None)  # never the completion
        payload["request_id"] = result.request_id
        for a in result.attempts:
            self.emit("attempt", {"request_id": result.request_id, "task": result.task, **a.to_dict()})
        self.emit("result", payload)


def _schedule(awaitable: Any) -> None:
    import asyncio  # lazy: only async hooks need it

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        log.warning("policyrouter: async hook called outside an event loop was skipped")
        return
    task = loop.create_task(awaitable)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
