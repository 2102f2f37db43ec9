"""The state interface: every piece of mutable router state lives behind it.

Backends (memory, sqlite, redis) implement each check-and-update atomically, so
budgets and limits hold under threads, asyncio tasks and processes alike.

The engine talks to state at three moments, each one call taking one frozen object:
``admit(Admit)`` before an attempt (the first one also looks the answer up in the
cache), ``finish(Finish)`` after a failed or checked attempt, and ``record(Record)``
when the request ends (the last attempt's finish, the cache store and the ledger row).
How a backend combines the stages of one call (one lock, one transaction, one Redis
script) is its own business; ``state/combined.py`` has the reference compositions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from policyrouter.stages.adaptive import Costs
from policyrouter.stages.budget import BudgetCharge, BudgetUnit
from policyrouter.stages.circuit import Admission, BreakerRecord, BreakerSettings
from policyrouter.stages.select import Load
from policyrouter.types import CacheEntry, FeedbackRow, LedgerRow, ProviderLimits

__all__ = [
    "LATE_SETTLE_S",
    "Admit",
    "AdmitStage",
    "Admitted",
    "BudgetCharge",
    "CacheEntry",
    "CacheStore",
    "EventSink",
    "Finish",
    "LedgerRow",
    "Load",
    "Record",
    "ReserveResult",
    "Stages",
    "StateBackend",
    "missing_methods",
]

# How long a reservation whose lease ran out can still settle late (its spend counted once), on
# every backend; Redis keeps the reservation's tombstone this long.
LATE_SETTLE_S = 86_400

EventSink = Callable[[str, dict[str, Any]], None]


class ReserveResult(NamedTuple):
    """What a budget reservation did."""

    ok: bool
    reservation_id: str | None = None
    denied_budget: str | None = None
    used: float = 0.0  # spent + reserved on the denying (or first) counter, before this reservation
    limit: float = 0.0
    unit: BudgetUnit = "usd"  # of the denying counter: ``used`` and ``limit`` are USD or tokens


@dataclass(frozen=True, slots=True)
class Admit:
    """One attempt asking to go: the stages to run, in order (a ``None`` stage is not run).

    With ``cache_key`` (a request's first attempt), a cache entry fresh at ``wall`` answers
    instead and nothing is admitted.
    """

    model: str
    now: float
    wall: float
    lease_s: float
    tokens: int = 0  # counted input + max output, for the tokens-per-minute window
    breaker: BreakerSettings | None = None
    concurrency: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    charges: tuple[BudgetCharge, ...] | None = None
    cache_key: str | None = None
    adaptive: float | None = None  # hold to the limits learned from the provider, keeping this reserve
    output_tokens: int = 0  # the max output part of ``tokens``, for learned input/output limits
    waited: bool = False  # asked again after a wait (a held attempt keeps its place in the queue)


AdmitStage = Literal["ok", "cached", "open", "slot", "rate", "learned", "budget"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """What ``admit`` did: the stages ran in order and stopped at the first that said no.

    ``stage`` is ``"ok"`` when every stage let the attempt through, ``"cached"`` when the
    cache answered (``entry``; nothing else ran), else the stage that stopped it: ``"open"``
    (breaker open), ``"slot"`` (no concurrency slot; the breaker verdict stands), ``"rate"``
    (the window wants ``wait`` seconds; the slot stays held), ``"learned"`` (as ``"rate"``, for
    the limits learned from the provider's headers), ``"budget"`` (``reserve`` says
    which budget refused; slot and probe stay held). What was taken is the caller's to use
    or give back.
    """

    stage: AdmitStage
    probe: bool = False  # the breaker admitted this attempt as its half-open probe
    slot: bool = False  # a concurrency slot is held
    wait: float = 0.0  # the rate window's wait, when it stopped the attempt
    reserve: ReserveResult | None = None  # the budget reservation, when budgets were charged
    entry: CacheEntry | None = None  # the cached answer, when the cache answered
    own: Costs | None = None  # adaptive limits: our usage in the window when admitted (this attempt's included)


@dataclass(frozen=True, slots=True)
class Finish:
    """One attempt ending: give back its slot, settle (or release) its reservation, tell its breaker.

    A success settles its cost and tokens (even 0); a failure settles what it cost and used,
    or releases the reservation when it cost and used nothing.
    """

    model: str
    now: float
    wall: float
    ok: bool
    cost_usd: float = 0.0
    tokens: int = 0  # input (cached included) + output tokens billed, for token budgets
    kind: str | None = None  # the error kind of a failure
    slot: bool = False
    reservation_id: str | None = None
    breaker: BreakerSettings | None = None
    probe: bool = False
    limits: ProviderLimits | None = None  # what the response's rate-limit headers said (adaptive models)
    admitted_at: float = 0.0  # with ``limits``: the wall time the attempt was admitted
    own: Costs | None = None  # with ``limits``: the admission's ``Admitted.own``
    latency_s: float | None = None  # a lowest_latency tier's model: the call's latency, for its average


@dataclass(frozen=True, slots=True)
class CacheStore:
    key: str
    entry: CacheEntry
    max_entries: int


@dataclass(frozen=True, slots=True)
class Record:
    """A request ending: its last attempt's finish (a success not yet finished), the answer to
    cache and the ledger row. Nothing the caller gets depends on the reply."""

    finish: Finish | None = None
    cache: CacheStore | None = None
    row: LedgerRow | None = None


class Stages(Protocol):
    """The per-stage calls: what the reference compositions (``state/combined.py``) run on, a
    backend itself or its view of its own stages inside one lock or transaction."""

    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission: ...
    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord: ...
    def slot_acquire(self, model: str, limit: int) -> bool: ...
    def slot_release(self, model: str) -> None: ...
    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float: ...
    # limits learned from the provider (``stages/adaptive.py``): log an attempt, ``(0.0, our usage in the
    # window)``, or ``(the wait, ...)``; and learn from a response's reading
    def learned_take(
        self, model: str, cost: Costs, reserve: float, wall: float, waited: bool = False
    ) -> tuple[float, Costs]: ...
    def learned_put(self, model: str, reading: ProviderLimits, admitted_at: float, own: Costs, wall: float) -> None: ...
    # budgets: reservations are leases (expire if the holder dies)
    def budget_reserve(self, charges: tuple[BudgetCharge, ...], wall: float, lease_s: float) -> ReserveResult: ...
    # a settle adds ``actual_usd`` to the reservation's USD counters, ``actual_tokens`` to its token counters
    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float, actual_tokens: int = 0) -> None: ...
    def budget_release(self, reservation_id: str) -> None: ...
    def cache_get(self, key: str) -> CacheEntry | None: ...
    def cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None: ...
    def ledger_append(self, row: LedgerRow) -> None: ...
    # a model's decaying average latency (``stages/select.ewma``), for lowest_latency tiers
    def latency_put(self, model: str, latency_s: float) -> None: ...


class StateBackend(Stages, Protocol):
    """What the router needs from state. ``now`` is monotonic, ``wall`` is epoch seconds.

    The engine calls ``admit``, ``finish`` and ``record``; a waiting attempt polls
    ``slot_acquire``/``rate_acquire``; the rest serves degrade, health, spend and tests.
    """

    # one attempt and one request (the engine's three calls)
    def admit(self, a: Admit) -> Admitted: ...
    def finish(self, f: Finish) -> BreakerRecord | None: ...
    def record(self, r: Record) -> None: ...

    def breaker_get(self, model: str) -> BreakerRecord: ...
    # each model's calls in flight (its held slots) and average latency: what a tier's strategy reads
    def loads(self, models: tuple[str, ...]) -> tuple[Load, ...]: ...
    def learned_get(self, model: str, wall: float) -> ProviderLimits | None: ...  # what is left, by the learned limits
    def budget_used(self, key: str, wall: float) -> tuple[float, float]: ...  # (spent, reserved), USD or tokens
    # (spent, reserved) for the soft-limit check: a shared backend may answer from totals it saw
    # lately (documented lag); the hard limit is always checked by the reservation itself
    def budget_used_recent(self, key: str, wall: float) -> tuple[float, float]: ...
    def budget_mark_soft(self, key: str) -> bool: ...  # True only the first time for this key
    def budget_counters(self, prefix: str) -> list[tuple[str, float, float]]: ...  # (key, spent, reserved)
    def ledger_rows(self, since_wall: float | None = None) -> list[LedgerRow]: ...
    def feedback_put(self, row: FeedbackRow) -> None: ...  # replaces the request's earlier feedback
    def feedback_rows(self) -> list[FeedbackRow]: ...

    # a shared backend reports its outages (state_unavailable / state_restored) here
    def attach_events(self, sink: EventSink) -> None: ...

    def close(self) -> None: ...


def missing_methods(state: object) -> list[str]:
    """The methods of :class:`StateBackend` that ``state`` lacks (the router refuses such a backend
    when it is built, rather than fail in the middle of a request)."""
    wanted = [
        n for cls in (Stages, StateBackend) for n, v in vars(cls).items() if not n.startswith("_") and callable(v)
    ]
    return sorted(n for n in wanted if not callable(getattr(state, n, None)))
