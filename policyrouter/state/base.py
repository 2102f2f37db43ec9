"""The state interface: every piece of mutable router state lives behind it.

Backends (memory, sqlite, redis) implement each check-and-update atomically, so
budgets and limits hold under threads, asyncio tasks and processes alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from policyrouter.fastinit import fast_init
from policyrouter.stages.circuit import Admission, BreakerRecord, BreakerSettings

if TYPE_CHECKING:
    from policyrouter.stages.budget import ChargeSet


# How long a reservation whose lease ran out can still settle late (its spend counted once), on
# every backend; Redis keeps the reservation's tombstone this long.
LATE_SETTLE_S = 86_400


class BudgetCharge(NamedTuple):
    """One budget counter a reservation touches: its key, amount and hard limit.

    A named tuple, not a dataclass: one is built per budget on every attempt, and a tuple
    builds in a fraction of the time (immutable all the same; fields by name or position).
    """

    budget: str
    key: str
    amount: float
    limit: float
    expires_at: float  # wall time after which the window's counter may be dropped


class ReserveResult(NamedTuple):
    """What a budget reservation did (a named tuple: built on every attempt, like ``BudgetCharge``)."""

    ok: bool
    reservation_id: str | None = None
    denied_budget: str | None = None
    used: float = 0.0  # spent + reserved on the denying (or first) counter, before this reservation
    limit: float = 0.0


class BudgetRefused(Exception):
    """``budget_hold``: a charge does not fit, so nothing was reserved. The router turns it into
    :class:`policyrouter.errors.BudgetExceeded`; it never reaches a caller."""

    def __init__(self, budget: str, used: float, limit: float) -> None:
        super().__init__(budget, used, limit)
        self.budget = budget
        self.used = used  # spent + reserved on the refusing counter, before this reservation
        self.limit = limit


@fast_init
@dataclass(frozen=True, slots=True)
class CacheEntry:
    value: Any
    expires_at: float
    stale_until: float


@fast_init
@dataclass(frozen=True, slots=True)
class LedgerRow:
    ts: float
    request_id: str
    task: str
    route: str
    model: str
    tenant: str | None
    user: str | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cost_usd: float
    provider_request_ids: str
    outcome: str
    attempts: int
    metadata: str = "{}"


AdmitStage = Literal["ok", "open", "slot", "rate", "budget"]


class AdmitResult(NamedTuple):
    """What ``attempt_admit`` did: the stages run in order and stop at the first that says no.

    ``stage`` is ``"ok"`` when every stage let the attempt through, else the one that
    stopped it: ``"open"`` (breaker open; nothing else ran), ``"slot"`` (no concurrency
    slot; the breaker verdict stands), ``"rate"`` (the rate window wants ``wait`` seconds;
    the slot stays held), ``"budget"`` (``reserve`` says which budget refused; slot and
    probe stay held). Whatever was taken before the stop is the caller's to use or give back.

    A named tuple, like ``ReserveResult``: one is built on every attempt.
    """

    stage: AdmitStage
    probe: bool = False  # the breaker admitted this attempt as its half-open probe
    slot: bool = False  # a concurrency slot is held
    wait: float = 0.0  # the rate window's wait, when it stopped the attempt
    reserve: ReserveResult | None = None  # the budget reservation, when budgets were charged


class StateBackend(Protocol):
    """What the router needs from state. ``now`` is monotonic, ``wall`` is epoch seconds."""

    # circuit breakers
    def breaker_admit(self, model: str, settings: BreakerSettings, now: float) -> Admission: ...
    def breaker_record(
        self, model: str, settings: BreakerSettings, now: float, ok: bool, kind: str | None, probe: bool
    ) -> BreakerRecord: ...
    def breaker_get(self, model: str) -> BreakerRecord: ...

    # per-model concurrency and rate limits
    def slot_acquire(self, model: str, limit: int) -> bool: ...
    def slot_release(self, model: str) -> None: ...
    def rate_acquire(self, model: str, rpm: int | None, tpm: int | None, tokens: int, now: float) -> float: ...

    # budgets: reservations are leases (expire if the holder dies)
    def budget_reserve(self, charges: Sequence[BudgetCharge], wall: float, lease_s: float) -> ReserveResult: ...
    def budget_settle(self, reservation_id: str, actual_usd: float, wall: float) -> None: ...
    def budget_release(self, reservation_id: str) -> None: ...
    # the budgets-only attempt: reserve ``amount`` on every counter of ``charges`` and return the
    # reservation id, or raise BudgetRefused (nothing reserved); ``budget_reserve``'s semantics
    def budget_hold(self, charges: ChargeSet, amount: float, wall: float, lease_s: float) -> str: ...
    def budget_used(self, key: str, wall: float) -> tuple[float, float]: ...  # (spent, reserved)
    def budget_mark_soft(self, key: str) -> bool: ...  # True only the first time for this key
    def budget_counters(self, prefix: str) -> list[tuple[str, float, float]]: ...  # (key, spent, reserved)

    # cache
    def cache_get(self, key: str) -> CacheEntry | None: ...
    def cache_set(self, key: str, entry: CacheEntry, max_entries: int) -> None: ...

    # ledger
    def ledger_append(self, row: LedgerRow) -> None: ...
    def ledger_rows(self, since_wall: float | None = None) -> list[LedgerRow]: ...

    # combined hot-path operations (one round trip on a remote backend; see state/combined.py)
    def attempt_admit(
        self,
        model: str,
        breaker: BreakerSettings | None,
        concurrency: int | None,
        rpm: int | None,
        tpm: int | None,
        tokens: int,
        charges: Sequence[BudgetCharge] | None,
        now: float,
        wall: float,
        lease_s: float,
    ) -> AdmitResult: ...
    def attempt_finish(
        self,
        model: str,
        slot: bool,
        reservation_id: str | None,
        cost_usd: float,
        breaker: BreakerSettings | None,
        now: float,
        wall: float,
        ok: bool,
        kind: str | None,
        probe: bool,
    ) -> BreakerRecord | None: ...
    def record_result(self, cache: tuple[str, CacheEntry, int] | None, row: LedgerRow | None) -> None: ...

    def close(self) -> None: ...


def missing_methods(state: object) -> list[str]:
    """The methods of :class:`StateBackend` that ``state`` lacks (the router refuses such a backend
    when it is built, rather than fail in the middle of a request)."""
    wanted = [n for n, v in vars(StateBackend).items() if not n.startswith("_") and callable(v)]
    return sorted(n for n in wanted if not callable(getattr(state, n, None)))
