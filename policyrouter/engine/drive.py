"""Drivers: perform the engine's actions, synchronously or with asyncio.

The engine decides; a driver calls the provider for a ``Call`` and waits for a ``Sleep``
through the injected clock, then sends the outcome back. Closing the engine's generator
unwinds its ``finally`` blocks, which give back reservations and slots.
"""

from __future__ import annotations

from collections.abc import Generator

from policyrouter.clock import Clock
from policyrouter.engine.run import Action, Call, Outcome, Sleep
from policyrouter.errors import PolicyRouterError, ProviderError
from policyrouter.types import Result

__all__ = ["drive_async", "drive_sync", "unexpected"]


def unexpected(exc: Exception, where: str = "provider adapter") -> ProviderError:
    """A provider raised something its adapter did not classify: record it, don't crash."""
    return ProviderError("unknown", f"unexpected {type(exc).__name__} from {where}")


def drive_sync(gen: Generator[Action, Outcome, Result], clock: Clock) -> Result:
    try:
        action = next(gen)
        while True:
            if isinstance(action, Call):
                try:
                    outcome: Outcome = action.provider.complete(action.request)
                except ProviderError as e:
                    outcome = e
                except PolicyRouterError:
                    raise
                except Exception as e:
                    outcome = unexpected(e)
                action = gen.send(outcome)
            else:
                assert isinstance(action, Sleep)
                clock.sleep(action.seconds)
                action = gen.send(None)
    except StopIteration as stop:
        result: Result = stop.value
        return result
    finally:
        gen.close()


async def drive_async(gen: Generator[Action, Outcome, Result], clock: Clock) -> Result:
    """Cancellation and errors propagate; ``gen.close()`` gives back what the attempt held."""
    try:
        action = next(gen)
        while True:
            if isinstance(action, Call):
                try:
                    outcome: Outcome = await action.provider.acomplete(action.request)
                except ProviderError as e:
                    outcome = e
                except PolicyRouterError:
                    raise
                except Exception as e:
                    outcome = unexpected(e)
                action = gen.send(outcome)
            else:
                assert isinstance(action, Sleep)
                await clock.asleep(action.seconds)
                action = gen.send(None)
    except StopIteration as stop:
        result: Result = stop.value
        return result
    finally:
        gen.close()
