"""Dynamic batching: concurrent requests of one model run as one ONNX Runtime call.

Each request is checked and decoded on the event loop before it queues, so a bad request fails
alone and never joins a batch. A collector task per model version forms batches in arrival order
(``BatchingSpec``: full, cut at a preferred size, or the oldest request's delay spent), runs each
in a worker thread (the only thread hop) and splits the outputs back by rows. One batch runs at
a time per model version: requests that arrive meanwhile form the next one. A batch that fails
is run again request by request in the same worker call, so only the request at fault fails.
A request cancelled while it waits leaves the queue; one past its deadline is answered 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Histogram

from hybridai.protocol.batching import BatchingSpec
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse

__all__ = ["BatchMetrics", "BatchModel", "Batched", "Batchers", "DynamicBatcher"]

Array = npt.NDArray[Any]
log = logging.getLogger(__name__)

QUEUE_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class BatchModel(Protocol):
    """What a batcher runs: ``OnnxModel``, or any model with the same methods."""

    name: str
    version: str

    def decode_request(
        self, request: InferenceRequest
    ) -> tuple[dict[str, Array], list[str] | None]: ...

    def infer(
        self, inputs: Mapping[str, Array], outputs: list[str] | None = None
    ) -> dict[str, Array]: ...

    def respond(
        self, request: InferenceRequest, results: Mapping[str, Array]
    ) -> InferenceResponse: ...

    def batch_problem(self) -> str | None: ...


class BatchMetrics:
    """Queue time per request and rows per batch, by model, on the caller's registry."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.queue = Histogram(
            f"{prefix}_batch_queue_seconds",
            "Time a request waited in its model's batching queue before its batch ran.",
            ["model"],
            buckets=QUEUE_BUCKETS_S,
            registry=registry,
        )
        self.rows = Histogram(
            f"{prefix}_batch_rows",
            "Rows (dimension 0) per batch run, by model.",
            ["model"],
            buckets=SIZE_BUCKETS,
            registry=registry,
        )


@dataclass(frozen=True)
class Batched:
    """One request's answer, with what its batch cost it."""

    response: InferenceResponse
    queue_ms: float  # from queueing to the start of its batch's run
    service_ms: float  # the batch's run
    batch_rows: int
    batch_requests: int


@dataclass(eq=False)
class _Pending:
    request: InferenceRequest
    arrays: dict[str, Array]
    wanted: list[str] | None
    rows: int
    key: tuple[tuple[str, str, tuple[int, ...]], ...]  # what must match to concatenate
    queued: float
    deadline: float | None
    future: asyncio.Future[Batched] = field(repr=False)


@dataclass
class _Result:
    response: InferenceResponse | None = None
    error: BaseException | None = None


class DynamicBatcher:
    """The batching queue of one model version (see the module docstring)."""

    def __init__(
        self, model: BatchModel, spec: BatchingSpec, metrics: BatchMetrics | None = None
    ) -> None:
        self.model = model
        self.spec = spec
        self._metrics = metrics
        self._queue: collections.deque[_Pending] = collections.deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.batches = 0  # batches run, for tests and status

    async def run(self, request: InferenceRequest, deadline: float | None = None) -> Batched:
        """Answer one request from a batch; ``deadline`` is a ``time.perf_counter()`` value."""
        if self._closed:
            raise ApiError(
                503, ErrorCode.MODEL_NOT_READY, f"model '{self.model.name}' is being unloaded"
            )
        arrays, wanted = self.model.decode_request(request)
        pending = _Pending(
            request,
            arrays,
            wanted,
            _rows(arrays),
            tuple((n, str(a.dtype), a.shape[1:]) for n, a in sorted(arrays.items())),
            time.perf_counter(),
            deadline,
            asyncio.get_running_loop().create_future(),
        )
        self._queue.append(pending)
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._collect())
        return await pending.future  # a cancelled caller cancels the future: it leaves

    def idle(self) -> bool:
        """Nothing queued and no batch running."""
        return not self._queue and (self._task is None or self._task.done())

    async def aclose(self, *, drain: bool = False) -> None:
        """Stop taking requests; queued ones run (``drain``) or are answered 503.

        A batch already running always finishes and answers its requests.
        """
        self._closed = True
        if not drain:
            self._fail_queued()
        self._arrived.set()  # a collector waiting out a delay looks again now
        if self._task is not None:
            await self._task

    # -- forming batches ------------------------------------------------------------------

    async def _collect(self) -> None:
        try:
            while self._queue:
                batch = await self._form()
                if batch:
                    await self._run(batch)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not leave callers waiting forever
            log.exception("batching of model %s failed", self.model.name)
            self._fail_queued()

    async def _form(self) -> list[_Pending]:
        """Wait until the queue's head can leave as a batch, and take it."""
        delay_s = self.spec.max_queue_delay_ms / 1000.0
        while True:
            while self._queue and self._queue[0].future.done():
                self._queue.popleft()  # cancelled while waiting
            if not self._queue:
                return []
            cut, rows, preferred = self._cut()
            waited = time.perf_counter() - self._queue[0].queued
            full = rows >= self.spec.max_batch_size
            if full or preferred or waited >= delay_s or self._closed:
                return [self._queue.popleft() for _ in range(cut)]
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), delay_s - waited)

    def _cut(self) -> tuple[int, int, bool]:
        """How many queued requests the next batch takes, their rows, and if at a preferred size.

        In arrival order, while the rows fit and the shapes concatenate; the largest preferred
        size the prefix reaches wins, else everything that fits. Cancelled requests ride along
        (they are skipped when the batch runs).
        """
        head = self._queue[0]
        if head.rows >= self.spec.max_batch_size:
            return 1, head.rows, False
        preferred = set(self.spec.preferred_batch_sizes)
        count = rows = 0
        best: tuple[int, int] | None = None
        for item in self._queue:
            if item.key != head.key or rows + item.rows > self.spec.max_batch_size:
                break
            count += 1
            rows += item.rows
            if rows in preferred:
                best = (count, rows)
        if best is not None:
            return best[0], best[1], True
        return count, rows, False

    # -- running them --------------------------------------------------------------------

    async def _run(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        live: list[_Pending] = []
        for item in batch:
            if item.future.done():
                continue
            if item.deadline is not None and started > item.deadline:
                item.future.set_exception(
                    ApiError(
                        503,
                        ErrorCode.UPSTREAM_UNAVAILABLE,
                        f"model '{self.model.name}' was too busy: the request waited "
                        f"{(started - item.queued) * 1000:.1f} ms in its batching queue, past "
                        "its latency budget; retry, or give it a larger latency_budget_ms",
                    )
                )
                continue
            live.append(item)
        if not live:
            return
        loop = asyncio.get_running_loop()
        results, begun, ended = await loop.run_in_executor(None, self._execute, live)
        self.batches += 1
        rows = sum(item.rows for item in live)
        service_ms = (ended - begun) * 1000
        if self._metrics is not None:
            self._metrics.rows.labels(self.model.name).observe(rows)
        for item, result in zip(live, results, strict=True):
            queue_s = begun - item.queued
            if self._metrics is not None:
                self._metrics.queue.labels(self.model.name).observe(queue_s)
            if item.future.done():
                continue  # its caller gave up while the batch ran
            if result.response is None:
                item.future.set_exception(result.error or RuntimeError("no answer"))
                continue
            item.future.set_result(
                Batched(result.response, queue_s * 1000, service_ms, rows, len(live))
            )

    def _execute(self, batch: list[_Pending]) -> tuple[list[_Result], float, float]:
        """In the worker thread: one run (each request alone if it fails), then the encoding."""
        begun = time.perf_counter()
        outputs = self._outputs(batch)
        ended = time.perf_counter()
        results: list[_Result] = []
        for item, out in zip(batch, outputs, strict=True):
            if isinstance(out, BaseException):
                results.append(_Result(error=out))
                continue
            try:
                results.append(_Result(response=self.model.respond(item.request, out)))
            except Exception as exc:  # an output v2 cannot carry: this request's problem
                results.append(_Result(error=exc))
        return results, begun, ended

    def _outputs(self, batch: list[_Pending]) -> list[dict[str, Array] | BaseException]:
        if len(batch) > 1:
            wanted: list[str] | None = []
            for item in batch:
                if item.wanted is None or wanted is None:
                    wanted = None
                else:
                    wanted.extend(n for n in item.wanted if n not in wanted)
            try:
                feeds = {
                    name: np.concatenate([item.arrays[name] for item in batch], axis=0)
                    for name in batch[0].arrays
                }
                split = _split(
                    self.model.infer(feeds, wanted), [i.rows for i in batch], self.model.name
                )
                return [
                    {n: part[n] for n in (item.wanted or part)}
                    for item, part in zip(batch, split, strict=True)
                ]
            except Exception as exc:
                log.info(
                    "a batch of %d requests for model %s failed (%s); running each alone",
                    len(batch),
                    self.model.name,
                    exc,
                )
        return [self._alone(item) for item in batch]

    def _alone(self, item: _Pending) -> dict[str, Array] | BaseException:
        try:
            return self.model.infer(item.arrays, item.wanted)
        except Exception as exc:
            return exc

    def _fail_queued(self) -> None:
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(
                    ApiError(
                        503,
                        ErrorCode.MODEL_NOT_READY,
                        f"model '{self.model.name}' stopped batching before this request ran; "
                        "retry",
                    )
                )


def _rows(arrays: Mapping[str, Array]) -> int:
    """The batch dimension; inputs that disagree on it are refused before queueing."""
    counts = {name: a.shape[0] if a.ndim else 0 for name, a in arrays.items()}
    distinct = set(counts.values())
    if len(distinct) != 1:
        raise ApiError(
            400,
            ErrorCode.SHAPE_MISMATCH,
            "inputs must have the same first (batch) dimension, but have "
            + ", ".join(f"'{n}': {c}" for n, c in counts.items()),
        )
    return distinct.pop()


def _split(outputs: Mapping[str, Array], rows: list[int], model: str) -> list[dict[str, Array]]:
    total = sum(rows)
    bounds = np.cumsum(rows)[:-1]
    parts: list[dict[str, Array]] = [{} for _ in rows]
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ValueError(
                f"model '{model}' output '{name}' has shape {list(array.shape)} for a batch of "
                f"{total} rows: it does not keep the batch dimension"
            )
        for part, piece in zip(parts, np.split(array, bounds), strict=True):
            part[name] = piece
    return parts


class Batchers:
    """The batchers of one server, one per model version, made when a spec first asks for one.

    A new spec for a version replaces its batcher (the old one finishes what it holds); a
    model without a batch dimension is served unbatched, with one warning. Making a batcher
    forgets the idle ones of the model's other versions, so a version the server dropped is
    not kept alive by its batcher (one is cheap to make again).
    """

    def __init__(self, metrics: BatchMetrics | None = None) -> None:
        self._metrics = metrics
        self._batchers: dict[tuple[str, str], DynamicBatcher] = {}
        self._warned: set[tuple[str, str]] = set()
        self._retired: set[asyncio.Task[None]] = set()

    def get(self, model: BatchModel, spec: BatchingSpec | None) -> DynamicBatcher | None:
        """The batcher for ``model`` under ``spec``; None: run it alone."""
        key = (model.name, model.version)
        current = self._batchers.get(key)
        if current is not None and current.model is model and current.spec == spec:
            return current
        if current is not None:
            del self._batchers[key]
            self._retire(current)
        if spec is None:
            return None
        problem = model.batch_problem()
        if problem is not None:
            if key not in self._warned:
                self._warned.add(key)
                log.warning("batching is off: %s", problem)
            return None
        for other in [k for k, b in self._batchers.items() if k[0] == key[0] and b.idle()]:
            del self._batchers[other]
        batcher = self._batchers[key] = DynamicBatcher(model, spec, self._metrics)
        return batcher

    def _retire(self, batcher: DynamicBatcher) -> None:
        """Let an old batcher answer what it holds, then stop."""
        task = asyncio.get_running_loop().create_task(batcher.aclose(drain=True))
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def aclose(self) -> None:
        for batcher in self._batchers.values():
            await batcher.aclose()
        self._batchers.clear()
        for task in list(self._retired):
            await task
