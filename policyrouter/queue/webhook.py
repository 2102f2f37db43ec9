"""Completion webhooks: a job's end POSTed to a receiver, HMAC-signed, retried.

The body is the job as JSON (``job_id``, ``queue``, ``task``, ``status``, ``result`` or
``error``). Headers: ``X-Policyrouter-Timestamp`` (epoch seconds) and
``X-Policyrouter-Signature: sha256=<hex>``, the HMAC-SHA256 of ``"<timestamp>.<body>"`` under
the secret. A receiver checks it with :func:`verify_signature` (and refuses old timestamps,
against replays). A 5xx, a 429 or no answer is retried after the backoff; another status is final.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from policyrouter.errors import ConfigurationError
from policyrouter.queue.base import JobInfo, dumps

__all__ = ["Webhook", "sign", "verify_signature"]

log = logging.getLogger("policyrouter")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """True when ``signature`` (the ``X-Policyrouter-Signature`` header) signs ``timestamp.body``."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True)
class Webhook:
    """A queue's webhook with its URL and secret read from the environment."""

    url: str
    secret: str
    max_attempts: int
    delays: tuple[float, ...]  # before the 2nd, 3rd, ... try
    timeout_s: float

    def __repr__(self) -> str:  # never the secret
        return f"Webhook(max_attempts={self.max_attempts})"

    @classmethod
    def from_spec(cls, spec: Any, environ: Mapping[str, str]) -> Webhook:
        url, secret = environ.get(spec.url_env), environ.get(spec.secret_env)
        if not url or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the queue webhook needs an http(s) URL in environment variable {spec.url_env}")
        if not secret:
            raise ConfigurationError(
                f"the queue webhook needs its signing secret in environment variable {spec.secret_env}"
            )
        b = spec.backoff
        delays = tuple(min(b.max_s, b.initial_s * b.multiplier**i) for i in range(spec.max_attempts - 1))
        return cls(url, secret, spec.max_attempts, delays, spec.timeout_s)

    def send(self, info: JobInfo, now: float, sleep: Callable[[float], None]) -> bool:
        """POST the job's end; True once the receiver answered 2xx."""
        body = dumps({"job_id": info.id, "queue": info.queue, "task": info.task, "status": info.status,
                      "result": info.result, "error": info.error}).encode()  # fmt: skip
        for attempt in range(self.max_attempts):
            if attempt:
                sleep(self.delays[attempt - 1])
            stamp = str(int(now))
            req = urllib.request.Request(self.url, data=body, method="POST")
            req.add_header("Content-Type", "application/json")
            req.add_header("X-Policyrouter-Timestamp", stamp)
            req.add_header("X-Policyrouter-Signature", sign(self.secret, stamp, body))
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # the scheme is checked: http(s)
                    if 200 <= resp.status < 300:
                        return True
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code != 429:
                    log.warning("policyrouter: webhook for job %s refused with %d", info.id, exc.code)
                    return False
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                pass  # no answer: try again
        log.warning("policyrouter: webhook for job %s not delivered after %d tries", info.id, self.max_attempts)
        return False
