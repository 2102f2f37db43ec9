"""The request path, in one place, and its public face for the rest of the package.

``_prepare`` turns a call's arguments into one frozen ``Request``; ``_run``'s
``Engine.run`` is the only retry loop (named steps over one ``RunState``); ``_drive`` and
``_stream`` perform its actions (sync, async, streamed); ``_finish`` ends a request (ledger,
cache, stale-if-error, events). ``_run``'s docstring says where a new rule goes.
"""

from policyrouter.engine._drive import drive_async, drive_sync
from policyrouter.engine._events import EventBus
from policyrouter.engine._prepare import input_limit, prepare, route, task_plan
from policyrouter.engine._request import Ask, Request
from policyrouter.engine._run import LEASE_MARGIN_S, Engine
from policyrouter.engine._shapes import OutputSpecs
from policyrouter.engine._stream import drive_stream, drive_stream_async

__all__ = [
    "LEASE_MARGIN_S",
    "Ask",
    "Engine",
    "EventBus",
    "OutputSpecs",
    "Request",
    "drive_async",
    "drive_stream",
    "drive_stream_async",
    "drive_sync",
    "input_limit",
    "prepare",
    "route",
    "task_plan",
]
