"""A fake clock that jumps forward instantly: retry, backoff and window tests never sleep."""

from policyrouter.clock import FakeClock

__all__ = ["FakeClock"]
