"""The models' side of `seqtool serve`: worker threads per loaded model answer the requests
(jobs) of its bounded queue, in turns. No HTTP here (`seqtool.serve.app` carries requests).

A turn (of one of the model's worker threads) answers one chunk: a few texts of the first
waiting job, joined by the texts of every other waiting job with the same options (one batch,
each job its own slice), or one sample of a /generate job. A job with texts left goes to the
back of the queue, so a heavy request shares the model with light ones turn by turn instead
of holding it to the end; while one thread runs a heavy chunk, another answers the others.
Between turns the worker drops the jobs whose client left and fails those past their
deadline (so the model is freed between batches), and a batch that fails is answered request
by request: a request the model cannot answer fails alone."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from seqtool.config import SearchConfig, ServerLimits
from seqtool.errors import SeqtoolError
from seqtool.serve.schema import RequestError, request_models

CHUNK_TEXTS = 32  # texts answered in one turn at most
CHUNK_CHARS = 4_000  # characters answered in one turn at most (a longer text goes alone)
RETRY_AFTER = "1"  # seconds a client turned away by a full queue is asked to wait


class Job:
    """One request to one model: its texts (or /generate's options), its deadline, and the
    future its answer lands in."""

    def __init__(self, kind: str, key: tuple, texts: list[str], deadline: float,
                 params: dict[str, Any] | None = None):
        self.kind, self.key, self.texts, self.deadline = kind, key, texts, deadline
        self.params = params or {}
        self.future: Future = Future()
        self.results: list[Any] = []
        self.next = 0  # the first text not answered yet
        self.started = False
        self.left = False  # the client went away
        self.stream: Any = None  # /generate's samples, drawn one a turn

    def leave(self) -> None:
        """The client went away: the worker drops the job at its next turn."""
        self.left = True
        self.future.cancel()

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.stream is not None:
            self.stream.close()  # frees the sampler's state now
            self.stream = None
        try:
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)
        except InvalidStateError:  # cancelled: nobody waits for it
            pass


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def as_request_error(error: BaseException, where: str) -> RequestError:
    """What the client learns of an error the model raised: its request's fault (400) or
    the server's (500, logged in one line)."""
    if isinstance(error, RequestError):
        return error
    if isinstance(error, (SeqtoolError, ValueError, UnicodeError)):
        return RequestError(one_line(error)[:500], 400)
    print(f"seqtool serve: {where}: {type(error).__name__}: {one_line(error)[:500]}",
          file=sys.stderr, flush=True)
    return RequestError(f"internal error: {type(error).__name__}", 500)


def answer_texts(model: Any, kind: str, key: tuple, texts: list[str]) -> list[Any]:
    """The records of one batch, in the CLI's `--format jsonl` form."""
    if kind == "classify":
        return [r.to_record() for r in model.classify(texts, *key)]
    if kind == "embed":
        vectors = model.embed(texts, *key).tolist()
        return [{"text": t, "vector": [round(x, 5) for x in v]} for t, v in zip(texts, vectors)]
    beam, length_penalty, n_best, ratio, max_input_length, precision, attention = key
    results = model.translate(texts, beam, length_penalty, n_best, ratio, max_input_length,
                              SearchConfig.batch_size, precision, attention=attention)
    return [r.to_record(attention=attention) for r in results]


class Worker:
    """The threads (`limits.model_workers`) that run one model: jobs wait in a queue of at
    most `limits.max_queue`; a job is in one thread's hands at a time, so while a heavy
    chunk runs in one, another answers the light requests."""

    def __init__(self, name: str, model: Any, limits: ServerLimits):
        self.name, self.model, self.limits = name, model, limits
        self.jobs: deque[Job] = deque()
        self.cond = threading.Condition()
        self.stopping = False  # take no new job; end when the queue is empty
        self.aborting = False  # answer every job 503 at its next turn (a second signal)
        self.turns = 0
        self.threads = [threading.Thread(target=self._loop, name=f"seqtool-serve {name} {i}",
                                         daemon=True) for i in range(limits.model_workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, job: Job) -> Future:
        with self.cond:
            if self.stopping:
                raise RequestError("the server is stopping", 503)
            if len(self.jobs) >= self.limits.max_queue:
                raise RequestError(f"{len(self.jobs)} requests wait for {self.name}; try again "
                                   "later", 503, {"Retry-After": RETRY_AFTER})
            self.jobs.append(job)
            self.cond.notify()
        return job.future

    def stop(self, abort: bool = False) -> None:
        """No new jobs; the worker ends once those waiting are answered (at once with
        `abort`). Takes no lock: a signal handler may call it."""
        self.aborting = self.aborting or abort
        self.stopping = True

    def join(self, timeout: float | None = None) -> bool:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        for thread in self.threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self.threads)

    def _loop(self) -> None:
        import torch

        torch.set_grad_enabled(False)  # this thread only answers; /generate's turns interleave
        while True:
            with self.cond:
                while not self.jobs and not self.stopping:
                    self.cond.wait(1.0)  # wakes now and then to see `stopping` set by a signal
                self._drop_finished()
                if not self.jobs:
                    if self.stopping:
                        return
                    continue
                batch = self._take()
            self.turns += 1  # approximate with several threads: for tests and benchmarks
            self._run(batch)
            with self.cond:
                for job, _start, _end in batch:
                    if not job.future.done():
                        self.jobs.append(job)  # its next chunk after the others' turns

    def _drop_finished(self) -> None:
        """Drop the jobs whose client left; fail those past their deadline (or all, when
        aborting)."""
        now = time.monotonic()
        for job in list(self.jobs):
            error = None
            if self.aborting:
                error = RequestError("the server is stopping", 503)
            elif job.left or job.future.cancelled():
                error = RequestError("the client went away", 499)
            elif now > job.deadline:
                seconds = f"{self.limits.request_timeout:g}"
                error = (RequestError(f"the request took over {seconds} s", 504) if job.started
                         else RequestError(f"the request waited over {seconds} s for {self.name}",
                                           503, {"Retry-After": RETRY_AFTER}))
            if error is not None:
                self.jobs.remove(job)
                job.settle(error=error)

    def _take(self) -> list[tuple[Job, int, int]]:
        """This turn's chunk: (job, first text, end) for the first job and those that share
        its options, taken off the queue."""
        head = self.jobs[0]
        if head.kind == "generate":
            self.jobs.popleft()
            return [(head, 0, 0)]
        batch: list[tuple[Job, int, int]] = []
        texts = chars = 0
        for job in list(self.jobs):
            if (job.kind, job.key) != (head.kind, head.key):
                continue
            start = end = job.next
            while end < len(job.texts):
                size = len(job.texts[end])
                if texts and (texts + 1 > CHUNK_TEXTS or chars + size > CHUNK_CHARS):
                    break
                end, texts, chars = end + 1, texts + 1, chars + size
            if end > start:
                batch.append((job, start, end))
                self.jobs.remove(job)
            if texts >= CHUNK_TEXTS or chars >= CHUNK_CHARS:
                break
        return batch

    def _run(self, batch: list[tuple[Job, int, int]]) -> None:
        batch = [(job, s, e) for job, s, e in batch if self._start(job)]
        if not batch:
            return
        if batch[0][0].kind == "generate":
            self._sample(batch[0][0])
            return
        kind, key = batch[0][0].kind, batch[0][0].key
        try:
            results = answer_texts(self.model, kind, key,
                                   [t for job, s, e in batch for t in job.texts[s:e]])
        except Exception as error:  # noqa: BLE001 - answered below, request by request
            if len(batch) == 1:
                job = batch[0][0]
                job.settle(error=as_request_error(error, f"{self.name} {kind}"))
                return
            for job, s, e in batch:  # alone, a request that cannot be answered fails alone
                self._run([(job, s, e)])
            return
        for job, s, e in batch:
            job.results.extend(results[:e - s])
            results = results[e - s:]
            job.next = e
            if job.next == len(job.texts):
                job.settle(job.results)

    def _start(self, job: Job) -> bool:
        if not job.started:
            job.started = True
            return job.future.set_running_or_notify_cancel()
        return not job.future.done()

    def _sample(self, job: Job) -> None:
        """One more sample of a /generate job."""
        try:
            if job.stream is None:
                job.stream = self.model.generate_stream(**job.params)
            job.results.append(next(job.stream).to_record())
        except StopIteration:
            job.settle(job.results)
            return
        except Exception as error:  # noqa: BLE001 - the client learns why
            job.settle(error=as_request_error(error, f"{self.name} generate"))
            return
        if len(job.results) == job.params["n"]:
            job.settle(job.results)


def model_name(model: str | Path | None) -> str:
    """How /models and requests name a model: its shipped name, or its file's stem; the
    task's shipped default is "default". Never a path on the server."""
    if model is None:
        return "default"
    return Path(model).stem if str(model).endswith(".pt") or "/" in str(model) else str(model)


TASK_OF = {"classify": "classify", "embed": "classify", "generate": "generate",
           "translate": "translate"}


class Service:
    """The loaded models ({task: {name: model}}), a worker each, and the request models."""

    def __init__(self, models: dict[str, dict[str, Any]], limits: ServerLimits | None = None):
        self.limits = limits or ServerLimits()
        self.requests: dict[str, type[BaseModel]] = request_models(self.limits)
        self.workers = {task: {name: Worker(f"{task} model {name}", model, self.limits)
                               for name, model in named.items()}
                        for task, named in models.items()}

    def describe(self) -> list[dict[str, Any]]:
        """GET /models: each model's task, name and labels; the first of a task answers the
        requests that name none."""
        described = []
        for task, workers in self.workers.items():
            for i, (name, worker) in enumerate(workers.items()):
                for j, entry in enumerate(worker.model.describe_all()):
                    described.append({"task": task, "name": name if j == 0 else entry["name"],
                                      "labels": entry["labels"], "default": i == j == 0})
        return described

    def worker(self, task: str, name: str | None) -> Worker:
        workers = self.workers.get(task)
        if not workers:
            raise RequestError(f"no {task} model is loaded (see GET /models)", 404)
        if name is None:
            return next(iter(workers.values()))
        if name not in workers:
            raise RequestError(f"no {task} model named {name[:100]!r} (loaded: "
                               f"{', '.join(workers)})", 404)
        return workers[name]

    def submit(self, endpoint: str, request: Any) -> Job:
        """Queue a validated request (`self.requests[endpoint]`); its answer comes in
        `job.future` (a list of records, or a RequestError)."""
        worker = self.worker(TASK_OF[endpoint], request.model)
        deadline = time.monotonic() + self.limits.request_timeout
        if endpoint == "generate":
            job = Job("generate", (), [], deadline, request.model_dump(exclude={"model"}))
        elif endpoint == "translate":
            r = request
            key = (r.beam, r.length_penalty, r.n_best, r.max_length_ratio, r.max_input_length,
                   r.precision, r.attention)
            job = Job("translate", key, request.texts, deadline)
        else:
            job = Job(endpoint, (request.max_input_length,), request.texts, deadline)
        worker.submit(job)
        return job

    def all_workers(self) -> list[Worker]:
        return [w for workers in self.workers.values() for w in workers.values()]

    def close(self, abort: bool = False, timeout: float | None = None) -> None:
        """Answer what waits (503 at once with `abort`) and end the workers."""
        for worker in self.all_workers():
            worker.stop(abort)
        for worker in self.all_workers():
            worker.join(timeout)
