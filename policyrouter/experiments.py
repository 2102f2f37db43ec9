"""Experiment reports: each variant of a task's experiment against its control, from the ledger.

Per variant: requests, cost per request, p50/p95 latency, error and fallback rates, and the mean
feedback score (``Router.feedback``) with a 95% confidence interval. Each variant is compared
with the control: Welch's test on cost per request and on the score, a two-proportion z-test on
the error rate. The tests use the normal approximation (the stdlib's ``NormalDist``), sound from
``MIN_SAMPLES`` observations per arm; below that the verdict says there are too few.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, fmean, quantiles, stdev
from typing import Any

from policyrouter.plan import ExperimentPlan
from policyrouter.state.base import StateBackend
from policyrouter.types import FeedbackRow, LedgerRow

__all__ = ["ALPHA", "MIN_SAMPLES", "Comparison", "ExperimentReport", "VariantStats", "experiment_report"]

ALPHA = 0.05
"""A difference is significant when its two-sided p-value is below this."""
MIN_SAMPLES = 30
"""Observations each arm needs before a test's verdict is given (the normal approximation)."""
_Z95 = NormalDist().inv_cdf(0.975)
_OK = frozenset({"ok", "cache_hit"})


@dataclass(frozen=True, slots=True)
class VariantStats:
    variant: str
    requests: int
    errors: int
    fallbacks: int
    cost_usd: float
    cost_per_request: float
    p50_latency_s: float | None
    p95_latency_s: float | None
    scores: int  # requests with a feedback score
    score_mean: float | None
    score_ci95: tuple[float, float] | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "fallbacks": self.fallbacks,
            "fallback_rate": self.fallback_rate,
            "cost_usd": self.cost_usd,
            "cost_per_request": self.cost_per_request,
            "p50_latency_s": self.p50_latency_s,
            "p95_latency_s": self.p95_latency_s,
            "scores": self.scores,
            "score_mean": self.score_mean,
            "score_ci95": list(self.score_ci95) if self.score_ci95 is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """One metric of a variant against the control: the difference, its p-value and the verdict."""

    variant: str
    metric: str  # cost_per_request | score | error_rate
    difference: float | None  # variant minus control
    p_value: float | None
    verdict: str  # significant | not significant | too few samples

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "metric": self.metric,
            "difference": self.difference,
            "p_value": self.p_value,
            "verdict": self.verdict,
        }


@dataclass(frozen=True, slots=True)
class ExperimentReport:
    task: str
    experiment: str
    control: str
    variants: tuple[VariantStats, ...]
    comparisons: tuple[Comparison, ...]

    @property
    def empty(self) -> bool:
        return not any(v.requests for v in self.variants)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "experiment": self.experiment,
            "control": self.control,
            "alpha": ALPHA,
            "min_samples": MIN_SAMPLES,
            "variants": [v.to_dict() for v in self.variants],
            "comparisons": [c.to_dict() for c in self.comparisons],
        }


def experiment_report(task: str, experiment: ExperimentPlan, state: StateBackend) -> ExperimentReport:
    """The report of ``experiment`` on ``task`` from the ledger and feedback rows ``state`` holds."""
    rows = [r for r in state.ledger_rows() if r.task == task and r.experiment == experiment.name]
    scores = _scores(state.feedback_rows())
    by_variant: dict[str, list[LedgerRow]] = {v.name: [] for v in experiment.variants}
    for r in rows:
        by_variant.setdefault(r.variant or "", []).append(r)  # a variant since removed is still reported
    stats = {name: _stats(name, arm, scores) for name, arm in by_variant.items()}
    control = experiment.control.name
    comparisons: list[Comparison] = []
    base_rows = by_variant[control]
    for name, arm in by_variant.items():
        if name == control:
            continue
        comparisons.append(_welch(name, "cost_per_request", [r.cost_usd for r in arm], [r.cost_usd for r in base_rows]))
        comparisons.append(_welch(name, "score", _arm_scores(arm, scores), _arm_scores(base_rows, scores)))
        comparisons.append(_proportions(name, stats[name], stats[control]))
    return ExperimentReport(task, experiment.name, control, tuple(stats.values()), tuple(comparisons))


def _scores(feedback: Sequence[FeedbackRow]) -> dict[str, float]:
    return {f.request_id: f.score for f in feedback if f.score is not None}


def _arm_scores(rows: Sequence[LedgerRow], scores: dict[str, float]) -> list[float]:
    return [scores[r.request_id] for r in rows if r.request_id in scores]


def _stats(name: str, rows: Sequence[LedgerRow], scores: dict[str, float]) -> VariantStats:
    n = len(rows)
    cost = sum(r.cost_usd for r in rows)
    latencies = sorted(r.latency_s for r in rows)
    arm_scores = _arm_scores(rows, scores)
    mean = fmean(arm_scores) if arm_scores else None
    ci = None
    if mean is not None and len(arm_scores) >= 2:
        half = _Z95 * stdev(arm_scores) / math.sqrt(len(arm_scores))
        ci = (mean - half, mean + half)
    return VariantStats(
        variant=name,
        requests=n,
        errors=sum(1 for r in rows if r.outcome not in _OK),
        fallbacks=sum(1 for r in rows if r.fallbacks),
        cost_usd=cost,
        cost_per_request=cost / n if n else 0.0,
        p50_latency_s=_percentile(latencies, 50),
        p95_latency_s=_percentile(latencies, 95),
        scores=len(arm_scores),
        score_mean=mean,
        score_ci95=ci,
    )


def _percentile(ordered: Sequence[float], pct: int) -> float | None:
    """The ``pct`` percentile, interpolated between the nearest ranks (``None`` without data)."""
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    return quantiles(ordered, n=100, method="inclusive")[pct - 1]


def _p_value(z: float) -> float:
    return 2 * (1 - NormalDist().cdf(abs(z)))


def _verdict(p: float) -> str:
    return "significant" if p < ALPHA else "not significant"


def _welch(variant: str, metric: str, a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's test of the difference of two means (``a`` minus ``b``)."""
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        diff = fmean(a) - fmean(b) if a and b else None
        return Comparison(variant, metric, diff, None, "too few samples")
    diff = fmean(a) - fmean(b)
    se = math.sqrt(stdev(a) ** 2 / len(a) + stdev(b) ** 2 / len(b))
    p = (1.0 if diff == 0 else 0.0) if se == 0 else _p_value(diff / se)
    return Comparison(variant, metric, diff, p, _verdict(p))


def _proportions(variant: str, a: VariantStats, b: VariantStats) -> Comparison:
    """The two-proportion z-test of the error rates (pooled)."""
    diff = a.error_rate - b.error_rate
    if a.requests < MIN_SAMPLES or b.requests < MIN_SAMPLES:
        return Comparison(variant, "error_rate", diff, None, "too few samples")
    pooled = (a.errors + b.errors) / (a.requests + b.requests)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.requests + 1 / b.requests))
    p = (1.0 if diff == 0 else 0.0) if se == 0 else _p_value(diff / se)
    return Comparison(variant, "error_rate", diff, p, _verdict(p))
