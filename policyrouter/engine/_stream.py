"""Drivers that run the engine (``Engine.run``) with streamed calls.

The loop is the same one ``complete`` uses: it reserves budget, picks models, retries
and falls back. Only the way a ``Call`` is performed differs: the provider's stream is
relayed to the caller chunk by chunk, and the loop gets the outcome when the stream
ends. So the budget reservation of an attempt is held for the whole stream. When the
caller stops early (``close``, ``aclose``, ``break``, cancellation) mid-call, the
provider's stream is closed (and with it the HTTP response: the connection is dropped,
not reused) and the loop gets ``Abandoned`` with what was delivered: it settles the
attempt at an estimate of that (the provider bills what it generated) and ends the request.

Before the first chunk reaches the caller a failure is an ordinary ``ProviderError``
(retry, fallback). After it, the outcome is ``StreamBroken``: the loop raises
``StreamInterrupted`` or, with ``on_stream_failure: restart``, moves to the next model
and the driver sends a ``reset`` chunk.

Thinking deltas are never ``text`` chunks: they become ``thinking`` chunks when the task
says ``thinking: {stream: true}`` and are dropped otherwise. Either way they are output,
so they count for the timeouts below; only a delivered one makes a later failure a
``StreamBroken``.

Timeouts: ``first_token_timeout_s`` bounds the wait for the first text, tool-call or
thinking delta, ``idle_timeout_s`` every gap between two deltas. Async streams enforce both
exactly (``asyncio.wait_for`` on each read). Sync streams cannot interrupt a blocking
read, so the transport's per-read timeout is set to the larger of the two and the
smaller one is checked as events arrive.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

from policyrouter.clock import Clock
from policyrouter.engine._drive import abandon, as_failure, awarm, warm
from policyrouter.engine._request import Request
from policyrouter.engine._run import Action, Call, Outcome, Sleep, StreamBroken, Warm
from policyrouter.errors import ProviderError
from policyrouter.plan import TaskPlan
from policyrouter.providers.base import StreamEvent
from policyrouter.stages.guard import StreamRestorer, stream_restorer
from policyrouter.types import ProviderResponse, Result, StreamChunk

__all__ = ["drive_stream", "drive_stream_async"]


def _read_timeout(tp: TaskPlan) -> float | None:
    values = [v for v in (tp.first_token_timeout_s, tp.idle_timeout_s) if v is not None]
    return max(values) if values else None


def _timeout(what: str, limit: float) -> ProviderError:
    return ProviderError("timeout", f"stream {what} timeout ({limit:g}s) passed")


def _failure(exc: Exception) -> ProviderError:
    return as_failure(exc, "provider stream")


class _Relay:
    """Per-call bookkeeping shared by the sync and async relays."""

    __slots__ = (
        "delivered",
        "first_token",
        "idle",
        "last",
        "model",
        "parts",
        "produced",
        "started",
        "thinking",
        "tool_parts",
    )

    def __init__(self, tp: TaskPlan, model: str, now: float) -> None:
        self.first_token = tp.first_token_timeout_s
        self.idle = tp.idle_timeout_s
        self.thinking = tp.stream_thinking
        self.model = model
        self.delivered = False  # the caller got a chunk: a failure now is a StreamBroken
        self.produced = False  # the model produced output (thinking included): the idle allowance applies
        self.parts: list[str] = []
        self.tool_parts: list[str] = []  # tool-call names, argument and thinking fragments received
        self.started = self.last = now

    def limit(self, now: float) -> float | None:
        """How long the next read may take (async: enforced exactly): what is left of the
        first-token or idle allowance; heartbeats do not extend it."""
        if self.produced:
            return None if self.idle is None else max(0.001, self.idle - (now - self.last))
        return None if self.first_token is None else max(0.001, self.first_token - (now - self.started))

    def chunk(self, event: StreamEvent, now: float) -> StreamChunk | None:
        """The chunk for ``event`` (``None`` for a heartbeat), after the timeout checks."""
        text, tool_call, _, thinking = event
        if self.produced:
            if self.idle is not None and now - self.last > self.idle:
                raise _timeout("idle", self.idle)
        elif self.first_token is not None and now - self.started > self.first_token:
            raise _timeout("first-token", self.first_token)
        if text is None and tool_call is None and thinking is None:
            return None  # a heartbeat: proves the connection alive, extends no allowance
        self.last = now
        self.produced = True
        if text is not None:
            self.delivered = True
            self.parts.append(text)
            return StreamChunk("text", text, None, None, self.model)
        if tool_call is not None:
            self.delivered = True
            self.tool_parts.append(f"{tool_call.get('name') or ''}{tool_call.get('arguments') or ''}")
            return StreamChunk("tool_call", "", tool_call, None, self.model)
        self.tool_parts.append(thinking or "")  # generated, so billed if the caller walks away
        if not self.thinking:
            return None  # thinking the task does not stream: dropped, never a text chunk
        self.delivered = True
        return StreamChunk("thinking", thinking or "", None, None, self.model)

    def failed(self, error: ProviderError) -> Outcome:
        return StreamBroken(error, "".join(self.parts)) if self.delivered else error

    def delivered_text(self) -> str:
        """Every text, tool-call and thinking fragment received (what an abandoned call is billed on)."""
        return "".join(self.parts) + "".join(self.tool_parts)


def _relay(call: Call, state: _Relay, tp: TaskPlan, clock: Clock) -> Generator[StreamChunk, None, Outcome]:
    try:
        events = call.provider.stream(call.request, read_timeout_s=_read_timeout(tp))
    except Exception as exc:
        return _failure(exc)
    try:
        for event in events:
            if event.response is not None:
                response: ProviderResponse = event.response
                return response
            chunk = state.chunk(event, clock.now())
            if chunk is not None:
                yield chunk
        return state.failed(ProviderError("server_error", "stream ended without a final response"))
    except Exception as exc:
        return state.failed(_failure(exc))
    finally:
        events.close()


def drive_stream(
    gen: Generator[Action, Outcome, Result], clock: Clock, req: Request
) -> Generator[StreamChunk, None, None]:
    """Run ``gen`` with streamed calls, yielding chunks; the last one is ``final``."""
    deliver = _Delivery(req)
    try:
        action = next(gen)
        while True:
            if isinstance(action, Call):
                relayed = _Relay(req.task, action.model, clock.now())
                relay = _relay(action, relayed, req.task, clock)
                try:
                    while True:
                        yield from deliver.chunk(next(relay))
                except StopIteration as done:
                    outcome: Outcome = done.value
                except GeneratorExit:  # the caller closed the stream mid-call
                    relay.close()
                    abandon(gen, relayed.delivered_text())
                    raise
                finally:
                    relay.close()
                failed = action.model
                action = gen.send(outcome)
                if isinstance(outcome, StreamBroken):
                    yield from deliver.chunk(StreamChunk("reset", model=failed, error_kind=outcome.error.kind))
            elif isinstance(action, Warm):
                action = gen.send(warm(action))
            else:
                assert isinstance(action, Sleep)
                clock.sleep(action.seconds)
                action = gen.send(None)
    except StopIteration as stop:
        yield from deliver.end(stop.value)
    finally:
        gen.close()


async def _arelay(call: Call, state: _Relay, tp: TaskPlan, clock: Clock) -> AsyncGenerator[StreamChunk | Outcome, None]:
    """Yields chunks, then exactly one outcome (a response, an error, ``StreamBroken``)."""
    import asyncio

    try:
        events = call.provider.astream(call.request, read_timeout_s=_read_timeout(tp))
    except Exception as exc:
        yield _failure(exc)
        return
    try:
        while True:
            limit = state.limit(clock.now())
            try:
                if limit is None:
                    event = await events.__anext__()
                else:
                    event = await asyncio.wait_for(events.__anext__(), limit)
            except StopAsyncIteration:
                yield state.failed(ProviderError("server_error", "stream ended without a final response"))
                return
            except asyncio.TimeoutError:
                what = ("idle", state.idle) if state.produced else ("first-token", state.first_token)
                yield state.failed(_timeout(what[0], what[1] or 0.0))
                return
            if event.response is not None:
                yield event.response
                return
            chunk = state.chunk(event, clock.now())
            if chunk is not None:
                yield chunk
    except Exception as exc:
        yield state.failed(_failure(exc))
    finally:
        await events.aclose()


async def drive_stream_async(
    gen: Generator[Action, Outcome, Result], clock: Clock, req: Request
) -> AsyncGenerator[StreamChunk, None]:
    """``drive_stream`` for asyncio; cancellation and ``aclose`` mid-call bill what was delivered."""
    import asyncio

    deliver = _Delivery(req)
    try:
        action = next(gen)
        while True:
            if isinstance(action, Call):
                outcome: Outcome = None
                relayed = _Relay(req.task, action.model, clock.now())
                relay = _arelay(action, relayed, req.task, clock)
                try:
                    async for item in relay:
                        if isinstance(item, StreamChunk):
                            for chunk in deliver.chunk(item):
                                yield chunk
                        else:
                            outcome = item
                except (GeneratorExit, asyncio.CancelledError):  # the caller went away mid-call
                    await relay.aclose()
                    abandon(gen, relayed.delivered_text())
                    raise
                finally:
                    await relay.aclose()
                failed = action.model
                action = gen.send(outcome)
                if isinstance(outcome, StreamBroken):
                    for chunk in deliver.chunk(StreamChunk("reset", model=failed, error_kind=outcome.error.kind)):
                        yield chunk
            elif isinstance(action, Warm):
                action = gen.send(await awarm(action))
            else:
                assert isinstance(action, Sleep)
                await clock.asleep(action.seconds)
                action = gen.send(None)
    except StopIteration as stop:
        for chunk in deliver.end(stop.value):
            yield chunk
    finally:
        gen.close()


class _Delivery:
    """What the caller gets: guard placeholders put back in text deltas (a split one is held
    until it is whole, flushed before the final chunk, dropped at a reset), and an answer
    that came from the cache (or stale after a failure) replayed as chunks."""

    __slots__ = ("restorer",)

    def __init__(self, req: Request) -> None:
        self.restorer: StreamRestorer | None = stream_restorer(req.guard)

    def chunk(self, chunk: StreamChunk) -> tuple[StreamChunk, ...]:
        r = self.restorer
        if r is None:
            return (chunk,)
        if chunk.type == "text":
            text = r.feed(chunk.text)
            return (chunk._replace(text=text),) if text else ()
        if chunk.type == "reset":
            r.flush()  # the caller discards everything before a reset
        return (chunk,)

    def end(self, result: Result) -> tuple[StreamChunk, ...]:
        if result.cache_hit:
            return replay(result)
        tail = self.restorer.flush() if self.restorer is not None else ""
        final = StreamChunk("final", result=result, model=result.model)
        return (StreamChunk("text", text=tail, model=result.model), final) if tail else (final,)


def replay(result: Result) -> tuple[StreamChunk, ...]:
    """A cached (or stale) answer as a stream: its text, its tool calls, the final chunk."""
    chunks = [StreamChunk("text", text=result.text, model=result.model)] if result.text else []
    for index, call in enumerate(result.tool_calls):
        chunks.append(StreamChunk("tool_call", tool_call={"index": index, **call}, model=result.model))
    chunks.append(StreamChunk("final", result=result, model=result.model))
    return tuple(chunks)
