"""`seqtool serve` under hostile or heavy load: the worker's turns (a heavy request shares the
model, a poisoned batch fails only its culprit, deadlines and departed clients free the model,
the queue is bounded), request fields validated from the config's ranges, and over real HTTP
on 127.0.0.1: the poisoned batch, a light request beside a heavy one, a slow client cut off,
the bearer token, several models of a task, and signals that end the process 130 or 143."""

from __future__ import annotations

import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import pytest

from seqtool.config import SamplingConfig, SearchConfig, ServerLimits
from seqtool.serve import Job, RequestError, Running, Worker, load_models, request_models
from seqtool.serve.service import CHUNK_TEXTS
from tests.conftest import ROOT

HOST = "127.0.0.1"
FAR = 10**9  # a deadline nobody reaches


# ----------------------------------------------------------------------------- the worker


class Record:
    def __init__(self, text: str):
        self.text = text

    def to_record(self) -> dict:
        return {"text": self.text}


class FakeClassifier:
    """Records each batch; the first batch waits for `gate`; a text with "poison" fails the
    batch it is in."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.gate = threading.Event()

    def classify(self, texts, max_input_length):
        self.calls.append(list(texts))
        self.gate.wait(30)
        if any("poison" in t for t in texts):
            raise ValueError("cannot encode this text")
        return [Record(t) for t in texts]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


@pytest.fixture
def fake():
    model = FakeClassifier()
    worker = Worker("fake", model, ServerLimits(max_queue=3, request_timeout=60,
                                                model_workers=1))
    yield model, worker
    model.gate.set()
    worker.join(10)


def job(*texts: str, deadline: float = FAR) -> Job:
    return Job("classify", (512,), list(texts), deadline)


def test_a_light_request_takes_its_turn_between_a_heavy_ones_chunks(fake):
    model, worker = fake
    finished = []
    heavy = job(*(f"heavy {i}" for i in range(3 * CHUNK_TEXTS)))
    heavy.future.add_done_callback(lambda _f: finished.append("heavy"))
    worker.submit(heavy)
    wait_for(lambda: model.calls, "the heavy request's first chunk")
    light = job("light")
    light.future.add_done_callback(lambda _f: finished.append("light"))
    worker.submit(light)
    model.gate.set()
    assert light.future.result(30) == [{"text": "light"}]
    assert heavy.future.result(30) == [{"text": f"heavy {i}"} for i in range(3 * CHUNK_TEXTS)]
    assert finished == ["light", "heavy"]
    assert len(model.calls[0]) == CHUNK_TEXTS and "light" not in model.calls[0]
    assert model.calls[1][0] == "light"  # its turn came next, batched with heavy's next chunk


def test_while_a_heavy_chunk_runs_another_worker_answers_the_light_request():
    class HeavyWaits(FakeClassifier):
        def classify(self, texts, max_input_length):
            if texts[0].startswith("heavy"):
                return super().classify(texts, max_input_length)
            return [Record(t) for t in texts]

    model = HeavyWaits()
    worker = Worker("fake", model, ServerLimits(model_workers=2))
    try:
        heavy = job("heavy")
        worker.submit(heavy)
        wait_for(lambda: model.calls, "the heavy chunk")
        light = job("light")
        worker.submit(light)
        assert light.future.result(30) == [{"text": "light"}]
        assert not heavy.future.done()  # still held at the gate
    finally:
        model.gate.set()
    assert heavy.future.result(30) == [{"text": "heavy"}]
    worker.join(10)


def test_a_batch_that_fails_is_answered_request_by_request(fake):
    model, worker = fake
    worker.submit(job("first"))
    wait_for(lambda: model.calls, "the first batch")
    good, poisoned = job("a", "b"), job("poison")
    worker.submit(good)
    worker.submit(poisoned)
    model.gate.set()
    assert good.future.result(30) == [{"text": "a"}, {"text": "b"}]
    with pytest.raises(RequestError) as error:
        poisoned.future.result(30)
    assert error.value.status == 400 and "cannot encode" in str(error.value)
    assert ["a", "b", "poison"] in model.calls  # batched together first, then alone


def test_a_request_past_its_deadline_frees_the_model_between_chunks(fake):
    model, worker = fake
    late = job(*(f"t{i}" for i in range(3 * CHUNK_TEXTS)), deadline=time.monotonic() + 0.2)
    never = job("queued", deadline=time.monotonic() + 0.2)
    worker.submit(late)
    wait_for(lambda: model.calls, "the first chunk")
    worker.submit(never)
    wait_for(lambda: time.monotonic() > late.deadline + 0.01, "the deadline")
    model.gate.set()
    with pytest.raises(RequestError) as error:
        late.future.result(30)
    assert error.value.status == 504
    with pytest.raises(RequestError) as error:
        never.future.result(30)
    assert error.value.status == 503 and error.value.headers["Retry-After"]
    worker.submit(job("after"))  # the model is free for the next request
    wait_for(lambda: ["after"] in model.calls, "the next request")
    assert len(model.calls) == 2  # the late request's other chunks never ran


def test_a_request_whose_client_left_is_dropped_unanswered(fake):
    model, worker = fake
    worker.submit(job("first"))
    wait_for(lambda: model.calls, "the first batch")
    gone = job("gone")
    worker.submit(gone)
    gone.leave()
    after = job("after")
    worker.submit(after)
    model.gate.set()
    assert after.future.result(30) == [{"text": "after"}]
    assert not any("gone" in call for call in model.calls)


def test_a_full_queue_answers_503_with_retry_after(fake):
    model, worker = fake
    worker.submit(job("running"))
    wait_for(lambda: model.calls, "the first batch")
    for i in range(3):  # max_queue
        worker.submit(job(f"waiting {i}"))
    with pytest.raises(RequestError) as error:
        worker.submit(job("one too many"))
    assert error.value.status == 503 and int(error.value.headers["Retry-After"]) > 0


# ----------------------------------------------------------------------------- validation

SERVED = [(SearchConfig, "translate", n) for n in ("beam", "n_best", "length_penalty",
                                                   "max_length_ratio", "precision")] + \
         [(SamplingConfig, "generate", n) for n in ("temperature", "top_k", "top_p",
                                                    "max_output_length", "guidance",
                                                    "no_repeat_ngram")]


@pytest.mark.parametrize("config, endpoint, name", SERVED, ids=[s[2] for s in SERVED])
def test_request_fields_take_the_options_default_and_range(config, endpoint, name):
    """The range is the option's (seqtool.config), narrowed only by the server's limit."""
    limits = ServerLimits()
    schema = request_models(limits)[endpoint].model_json_schema()["properties"][name]
    spec = {f.name: f for f in fields(config)}[name]
    assert schema["default"] == spec.default
    meta = spec.metadata
    if "choices" in meta:
        assert schema["enum"] == list(meta["choices"])
        return
    if "min" in meta and not meta.get("or_zero"):  # or 0: said in the description
        key = "exclusiveMinimum" if meta.get("min_open") else "minimum"
        assert schema[key] == meta["min"]
    cap = {"beam": limits.max_beam, "max_length_ratio": limits.max_translation_ratio,
           "max_output_length": limits.max_output_pieces}.get(name)
    top = schema.get("maximum", schema.get("exclusiveMaximum"))
    assert top == (cap if cap is not None and ("max" not in meta or cap < meta["max"])
                   else meta.get("max"))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "1", None])
def test_every_number_field_refuses_what_is_no_finite_number(value):
    models = request_models(ServerLimits())
    for config, endpoint, name in SERVED:
        if "choices" in {f.name: f for f in fields(config)}[name].metadata:
            continue
        body = {"texts": ["a"]} if endpoint == "translate" else {"label": "x"}
        with pytest.raises(Exception, match=name):
            models[endpoint].model_validate({**body, name: value})


# ----------------------------------------------------------------------------- over HTTP


def request(port, method, path, body=None, raw=None, headers=None):
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, json.loads(text), dict(response.getheaders())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def classifier(toy_classifier):
    return load_models({"classify": str(toy_classifier)}, "cpu")


def test_a_text_that_cannot_be_encoded_fails_only_its_own_request(classifier):
    poisoned = b'{"texts": ["fine", "\\ud800"]}'
    jobs = [None if i == 20 else {"texts": [f"text {i}"]} for i in range(60)]
    with Running(classifier) as server, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda body: request(
            server.port, "POST", "/classify", body, raw=None if body else poisoned), jobs))
    for body, (status, answer, _headers) in zip(jobs, answers):
        if body is None:
            assert status == 400 and "surrogate" in answer["error"]
        else:
            assert status == 200 and answer["results"][0]["text"] == body["texts"][0]


def test_a_light_request_is_answered_while_a_heavy_one_runs(classifier):
    limits = ServerLimits(max_texts=512, max_chars=2000, max_body=2_000_000)
    heavy = {"texts": [f"{i} " + "word " * 390 for i in range(128)]}  # 64 chunks of 2
    done = {}
    with Running(classifier, limits=limits) as server:
        def send_heavy():
            done["heavy"] = request(server.port, "POST", "/classify", heavy)[0]

        thread = threading.Thread(target=send_heavy)
        thread.start()
        [worker] = server.service.all_workers()
        wait_for(lambda: worker.turns >= 1 or "heavy" in done, "the heavy request's first turn")
        status, answer, _ = request(server.port, "POST", "/classify", {"texts": ["light"]})
        light_first = "heavy" not in done
        thread.join(300)
    assert status == 200 and answer["results"][0]["text"] == "light"
    assert done["heavy"] == 200
    assert light_first  # answered before the heavy request's last chunk


def test_a_slow_client_is_cut_off_with_408(classifier):
    limits = ServerLimits(read_timeout=1.0)
    with Running(classifier, limits=limits) as server:
        starts = [b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n{",  # body
                  b"POST /classify HTTP/1.1\r\nHost: x\r\n"]  # headers
        for start in starts:
            # A byte sent just after the server hung up makes it reset the connection, which
            # can drop its answer unread (a race a loaded machine makes likely): try again.
            answers = [slow_client(server.port, start) for _ in range(3)]
            answer = next((a for a in answers if a is not None), None)
            assert answer is not None, "the 408 answer was lost to a reset three times"
            assert answer.startswith(b"HTTP/1.1 408 ") and b'"error"' in answer, answer
        assert request(server.port, "GET", "/health")[0] == 200


def slow_client(port: int, start: bytes) -> bytes | None:
    """Send `start`, then a byte now and then until the server answers; the whole answer
    once the server hung up, or None if the connection was reset first."""
    try:
        with socket.create_connection((HOST, port), timeout=60) as s:
            s.sendall(start)
            s.settimeout(0.25)
            answer = b""
            for _ in range(400):
                try:
                    answer = s.recv(4096)
                    break
                except TimeoutError:
                    s.sendall(b" " if start.endswith(b"{") else b"X")
            s.settimeout(30)
            while chunk := s.recv(4096):  # then the server hangs up
                answer += chunk
            return answer
    except (ConnectionResetError, BrokenPipeError):
        return None


def test_a_token_is_required_and_accepted(classifier):
    with Running(classifier, token="s3cret-token") as server:
        assert request(server.port, "GET", "/health")[0] == 200  # for load balancers
        status, answer, headers = request(server.port, "GET", "/models")
        assert status == 401 and "Bearer" in answer["error"]
        assert headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer s3cret-tokeN"}
        assert request(server.port, "POST", "/classify", {"texts": ["a"]}, headers=wrong)[0] \
            == 401
        right = {"Authorization": "Bearer s3cret-token"}
        status, answer, _ = request(server.port, "POST", "/classify", {"texts": ["a"]},
                                    headers=right)
        assert status == 200 and answer["results"][0]["text"] == "a"
        assert request(server.port, "GET", "/openapi.json", headers=right)[0] == 200


def test_several_models_of_a_task_are_picked_by_name(toy_classifier):
    models = load_models({"classify": {"first": str(toy_classifier),
                                       "second": str(toy_classifier)}}, "cpu")
    with Running(models) as server:
        status, answer, _ = request(server.port, "GET", "/models")
        assert [(m["task"], m["name"], m["default"]) for m in answer["models"]] == [
            ("classify", "first", True), ("classify", "second", False)]
        assert all(m["labels"] == ["negative", "positive"] for m in answer["models"])
        assert "path" not in answer["models"][0]
        body = {"texts": ["I love my cat."]}
        first = request(server.port, "POST", "/classify", body)[1]
        second = request(server.port, "POST", "/classify", {**body, "model": "second"})[1]
        assert first == second  # the same checkpoint under two names
        status, answer, _ = request(server.port, "POST", "/classify", {**body, "model": "x"})
        assert status == 404 and "first, second" in answer["error"]


# ----------------------------------------------------------------------------- the process

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_another_host_needs_a_token_or_says_so():
    out = subprocess.run([sys.executable, "-m", "seqtool.cli", "serve", "--host", "0.0.0.0"],
                         capture_output=True, text=True, env=ENV, timeout=120)
    assert out.returncode == 2 and "--token-file" in out.stderr and "Traceback" not in out.stderr


def start(toy_classifier, toy_generator, *options):
    process = subprocess.Popen(
        [sys.executable, "-m", "seqtool.cli", "serve", "--port", "0", "--tasks",
         "classify,generate", "-m", f"classify={toy_classifier}",
         "-m", f"generate={toy_generator}", *options],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=ENV, cwd=ROOT)
    line = process.stderr.readline()
    if "listening on http://127.0.0.1:" not in line:
        process.kill()
        raise AssertionError(f"no listening line: {line!r} {process.stderr.read()}")
    return process, int(line.split("127.0.0.1:")[1].split()[0])


def in_flight(port: int, body: dict) -> http.client.HTTPConnection:
    """A request sent whole; its answer is read later."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    conn.request("POST", "/generate", body=json.dumps(body))
    return conn


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT]] * 3 +
                         [[signal.SIGTERM, signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
                         ids=["TERM", "INT"] * 3 + ["TERM-TERM", "INT-INT"])
def test_signals_end_the_server_130_or_143_answering_what_is_in_flight(
        toy_classifier, toy_generator, signals):
    process, port = start(toy_classifier, toy_generator)
    try:
        # clients that leave: one mid-request, one before its answer
        with socket.create_connection((HOST, port)) as s:
            s.sendall(b"POST /classify HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"te")
        with socket.create_connection((HOST, port)) as s:
            body = json.dumps({"label": "positive", "n": 50, "seed": 1}).encode()
            s.sendall(b"POST /generate HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
        conn = in_flight(port, {"label": "positive", "n": 50, "seed": 3})
        assert request(port, "GET", "/health")[0] == 200  # the request above was read
        for signum in signals:
            process.send_signal(signum)
        response = conn.getresponse()
        answer = json.loads(response.read())
        if len(signals) == 1:
            assert response.status == 200 and len(answer["results"]) == 50
        else:  # a second signal: answered at its next turn, perhaps 503
            assert response.status in (200, 503), answer
        assert process.wait(120) == 128 + signals[0]
        stderr = process.stderr.read()
        assert "stopping" in stderr
        assert "Traceback" not in stderr and "terminate called" not in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_models_are_named_by_shipped_name_file_stem_or_as_given():
    import click

    from seqtool.cli.serve import parse_models

    assert parse_models(("classify=brown-genre", "classify=runs/a/model.pt",
                         "classify:b=runs/b/model.pt", "translate=x.pt")) == {
        "classify": {"brown-genre": "brown-genre", "model": "runs/a/model.pt",
                     "b": "runs/b/model.pt"}, "translate": {"x": "x.pt"}}
    for clash in (("classify=a/model.pt", "classify=b/model.pt"), ("classify:=a.pt",)):
        with pytest.raises(click.BadParameter):
            parse_models(clash)
