"""A provider's API keys: which are present, which one a call uses, which were set aside.

A provider may name several key variables (``api_key_env: [A, B]``, or entries with a
``weight``) to rotate keys without downtime. :class:`KeyRing` reads them all at first use:
a variable that is missing or empty is skipped with a warning (log and ``key_missing``
event); only when none is present is it a :class:`ConfigurationError` naming them.

Each call picks one key at random by weight (the router's injected ``rng``, so tests are
exact); keys of weight 0 serve only when no weighted key is left, in the order listed.
Each key has its own SDK clients, built the first time it is needed. A key the provider
refuses (HTTP 401 or 403) is set aside for the life of this provider object (a reload that
changes the provider's settings builds a new one) and the call goes on with the next key,
within the same attempt: it is not the model's fault, so it is neither a retry nor a
breaker failure. The last key left is never set aside: its 401 fails the request with
``auth`` as a single key does, and the next request asks again (an auth outage on the
provider's side heals without a restart). Setting aside is per process: other processes
sharing the keys find out on their own first 401.

Key values live only here and in the SDK clients; events, logs and errors name the
variable, never its value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from policyrouter.errors import ConfigurationError, ProviderError
from policyrouter.providers.base import LoopLocal, Shared

if TYPE_CHECKING:
    import random

__all__ = ["EventSink", "KeyRing", "KeySpec", "LiveKey", "key_list"]

S = TypeVar("S")
A = TypeVar("A")

EventSink = Callable[[str, dict[str, Any]], None]
"""Receives ``(event name, payload)``: the router passes its event bus's ``emit``."""


KeySpec = str | Sequence[str | tuple[str, float]] | None
"""How an adapter takes its keys: one variable, a list of variables, or ``(variable, weight)`` pairs."""

log = logging.getLogger("policyrouter")


def key_list(keys: KeySpec) -> tuple[tuple[str, float], ...]:
    """``keys`` as ``(variable, weight)`` pairs (a variable alone weighs 1)."""
    if keys is None:
        return ()
    if isinstance(keys, str):
        return ((keys, 1.0),)
    return tuple((key, 1.0) if isinstance(key, str) else (key[0], float(key[1])) for key in keys)


class LiveKey(Generic[S, A]):
    """One present key: its variable, its weight, and its clients (built on first use)."""

    __slots__ = ("async_", "env", "sync", "value", "weight")

    def __init__(
        self, env: str | None, weight: float, value: str, new_sync: Callable[[str], S], new_async: Callable[[str], A]
    ) -> None:
        self.env = env
        self.weight = weight
        self.value = value
        self.sync: Shared[S] = Shared(lambda: new_sync(value))
        self.async_: LoopLocal[A] = LoopLocal(lambda: new_async(value))

    def __repr__(self) -> str:
        return f"LiveKey(env={self.env!r}, weight={self.weight!r})"


class KeyRing(Generic[S, A]):
    """The keys of provider ``provider``: ``keys`` are ``(variable, weight)`` pairs, read from
    ``environ`` at first use. With no keys, the provider is keyless and every call sends
    ``keyless`` (never treated as a secret). ``new_sync`` / ``new_async`` build one SDK client
    for a key value; ``events`` receives ``key_missing`` and ``key_set_aside``."""

    __slots__ = (
        "_events",
        "_keyless",
        "_keys",
        "_live",
        "_lock",
        "_new_async",
        "_new_sync",
        "_read",
        "_rng",
        "environ",
        "provider",
    )

    def __init__(
        self,
        provider: str,
        keys: Sequence[tuple[str, float]],
        *,
        environ: Mapping[str, str],
        new_sync: Callable[[str], S],
        new_async: Callable[[str], A],
        rng: random.Random | None = None,
        events: EventSink | None = None,
        keyless: str | None = None,
    ) -> None:
        if not keys and keyless is None:
            raise ValueError(f"provider {provider!r}: no API key variable and no keyless value")
        if rng is None:
            import random

            rng = random.Random()
        self.provider = provider
        self.environ = environ
        self._keys = tuple(keys)
        self._keyless = keyless
        self._new_sync = new_sync
        self._new_async = new_async
        self._rng = rng
        self._events = events
        self._lock = threading.Lock()
        self._read: tuple[LiveKey[S, A], ...] = ()  # every key read, in the order listed; empty until loaded
        self._live: tuple[LiveKey[S, A], ...] = ()  # the keys read and not set aside

    def __repr__(self) -> str:
        return f"KeyRing(provider={self.provider!r}, keys={list(self.envs)!r})"

    @property
    def envs(self) -> tuple[str, ...]:
        """The key variables, in the order listed."""
        return tuple(env for env, _ in self._keys)

    # ------------------------------------------------------------------ keys

    def live(self) -> tuple[LiveKey[S, A], ...]:
        """The keys in use (read from the environment on the first call), in the order listed."""
        live = self._live
        if not live:
            with self._lock:
                live = self._live
                if not live:
                    live = self._read = self._live = self._load()
        return live

    def secrets(self) -> tuple[str, ...]:
        """Every key value read, set aside or not: what error messages must never show."""
        return tuple(key.value for key in self._read if key.env is not None)

    def pick(self) -> LiveKey[S, A]:
        """The key for one call: at random by weight among the weighted keys left, else the
        first drained (weight 0) one. One key left: that key, no random draw."""
        live = self.live()
        if len(live) == 1:
            return live[0]
        total = sum(key.weight for key in live)
        if total <= 0:
            return live[0]
        point = self._rng.random() * total
        for key in live:
            point -= key.weight
            if key.weight > 0 and point < 0:
                return key
        return next(key for key in reversed(live) if key.weight > 0)  # float rounding at the top end

    def refused(self, key: LiveKey[S, A], error: ProviderError) -> bool:
        """Whether the call that ``key`` made and ``error`` ended may go on with another key:
        the provider refused the key itself (a 401, or a cloud's unknown or expired credential; not
        a model's 403) and ``key`` is set aside (or already was), leaving others."""
        if not error.key_refused or key.env is None:
            return False
        with self._lock:
            live = self._live
            if key not in live:
                return True  # a concurrent call set it aside already
            if len(live) == 1:
                return False  # the last key is kept: its refusal is the request's auth error
            self._live = left = tuple(k for k in live if k is not key)
        log.warning(
            "policyrouter: provider %r refused the key in %s (HTTP %s); it is set aside, %d key(s) left",
            self.provider,
            key.env,
            error.status_code,
            len(left),
        )
        self._emit(
            "key_set_aside",
            {"provider": self.provider, "key_env": key.env, "status_code": error.status_code, "keys_left": len(left)},
        )
        return True

    def read(self) -> tuple[LiveKey[S, A], ...]:
        """Every key read so far, set aside or not (to close their clients); never reads."""
        return self._read

    # ------------------------------------------------------------------ loading

    def _load(self) -> tuple[LiveKey[S, A], ...]:
        """Read every variable; warn about the missing ones; fail only when none is present."""
        if not self._keys:
            assert self._keyless is not None
            return (LiveKey(None, 1.0, self._keyless, self._new_sync, self._new_async),)
        present: list[LiveKey[S, A]] = []
        missing: list[str] = []
        for env, weight in self._keys:
            value = self.environ.get(env)
            if value:
                present.append(LiveKey(env, weight, value, self._new_sync, self._new_async))
            else:
                missing.append(env)
        if not present:
            raise self._none_present(missing)
        self._report_missing(missing)
        return tuple(present)

    def _none_present(self, missing: list[str]) -> ConfigurationError:
        """The error when no key variable is set: it names the one variable, or all of them."""
        if len(missing) == 1:
            return ConfigurationError(
                f"provider {self.provider!r}: environment variable {missing[0]} (the API key) is not set or empty"
            )
        return ConfigurationError(
            f"provider {self.provider!r}: none of its API key variables is set (or non-empty): {', '.join(missing)}"
        )

    def _report_missing(self, missing: list[str]) -> None:
        """A warning and a ``key_missing`` event for each variable skipped while others are set."""
        for env in missing:
            log.warning(
                "policyrouter: provider %r: environment variable %s (an API key) is not set or empty; "
                "using the other keys",
                self.provider,
                env,
            )
            self._emit("key_missing", {"provider": self.provider, "key_env": env})

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        if self._events is not None:
            self._events(event, payload)
