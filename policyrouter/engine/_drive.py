"""Drivers: perform the engine's actions, synchronously or with asyncio.

The engine decides; a driver builds the provider's client for a ``Warm`` (sync, or the
running loop's async one), calls the provider for a ``Call`` and waits for a ``Sleep``
through the injected clock, then sends the outcome back. Closing the engine's generator
unwinds its ``finally`` blocks, which give back reservations and slots.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import closing, suppress
from typing import cast

from policyrouter.clock import Clock
from policyrouter.engine._run import Abandoned, Action, Outcome, Sleep, Warm
from policyrouter.errors import PolicyRouterError, ProviderError, RouterError
from policyrouter.types import Result

__all__ = ["abandon", "as_failure", "awarm", "drive_async", "drive_sync", "warm"]


def as_failure(exc: Exception, where: str = "provider adapter") -> ProviderError:
    """What a provider call's exception means to the engine: a ``ProviderError`` is the
    failure itself; anything the adapter did not classify is recorded as ``unknown`` (it
    never crashes the request); one of our own errors (a missing key) propagates."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, PolicyRouterError):
        raise exc
    return ProviderError("unknown", f"unexpected {type(exc).__name__} from {where}")


def warm(action: Warm) -> ProviderError | None:
    """Build the provider's sync client; what kept it from being built is the attempt's failure."""
    try:
        action.provider.warm(connect=False)
    except Exception as e:
        return as_failure(e)
    return None


async def awarm(action: Warm) -> ProviderError | None:
    """Build the running loop's async client of the provider (see :func:`warm`)."""
    try:
        await action.provider.awarm(connect=False)
    except Exception as e:
        return as_failure(e)
    return None


def abandon(gen: Generator[Action, Outcome, Result], delivered: str = "") -> None:
    """The caller went away mid-call (a cancelled ``acomplete``, a closed stream, an interrupt):
    the engine settles the attempt on what was delivered (the upstream bills what it generated)
    and ends the request; its ``StreamAbandoned`` is for the ledger, nobody is left to raise it to."""
    with suppress(RouterError, StopIteration):
        gen.send(Abandoned(delivered))


def drive_sync(gen: Generator[Action, Outcome, Result], clock: Clock) -> Result:
    with closing(gen):
        outcome: Outcome = None
        while True:
            try:
                action = gen.send(outcome)
            except StopIteration as stop:
                return cast(Result, stop.value)
            if isinstance(action, Sleep):
                clock.sleep(action.seconds)
                outcome = None
                continue
            if isinstance(action, Warm):
                outcome = warm(action)
                continue
            try:
                outcome = action.provider.complete(action.request)
            except Exception as e:
                outcome = as_failure(e)
            except BaseException:  # an interrupt mid-call: the call is billed all the same
                abandon(gen)
                raise


async def drive_async(gen: Generator[Action, Outcome, Result], clock: Clock) -> Result:
    """Cancellation and errors propagate; closing ``gen`` gives back what the attempt held."""
    with closing(gen):
        outcome: Outcome = None
        while True:
            try:
                action = gen.send(outcome)
            except StopIteration as stop:
                return cast(Result, stop.value)
            if isinstance(action, Sleep):
                await clock.asleep(action.seconds)
                outcome = None
                continue
            if isinstance(action, Warm):
                outcome = await awarm(action)
                continue
            try:
                outcome = await action.provider.acomplete(action.request)
            except Exception as e:
                outcome = as_failure(e)
            except BaseException:  # cancelled mid-call: the call is billed all the same
                abandon(gen)
                raise
