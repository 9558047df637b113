"""`seqtool serve`: real HTTP requests on the loopback address answer as the CLI does, in
parallel too; bad input gets a 4xx and a one-line JSON error; SIGTERM and SIGINT let the
request in flight finish."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from seqtool.config import ServerLimits as Limits
from seqtool.serve import Running, load_models
from tests.conftest import ROOT, run_cli

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def server(toy_classifier, toy_generator, toy_translator):
    models = load_models({"classify": str(toy_classifier), "generate": str(toy_generator),
                          "translate": str(toy_translator)}, "cpu")
    limits = Limits(max_texts=8, max_chars=300, max_body=20_000, max_samples=50,
                    max_prompt_samples=1_000)
    with Running(models, HOST, 0, limits) as srv:
        yield srv.port


def request(port: int, method: str, path: str, body=None, raw: bytes | None = None,
            headers: dict | None = None, timeout: float = 60):
    """(status, parsed JSON answer) of one request on a fresh connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode("utf-8")
        assert response.getheader("Content-Type").startswith("application/json")
        assert text.endswith("\n") and "\n" not in text[:-1]  # one line
        return response.status, json.loads(text)
    finally:
        conn.close()


def post(port: int, path: str, body) -> list[dict]:
    status, answer = request(port, "POST", path, body)
    assert status == 200, answer
    assert list(answer) == ["results"]
    return answer["results"]


def cli_records(*args) -> list[dict]:
    out = run_cli(*args, "--format", "jsonl").output
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


TEXTS = ["I love my cat.", "It rains all day.", ""]


def test_health_and_models(server, toy_classifier, toy_translator):
    assert request(server, "GET", "/health") == (200, {"status": "ok"})
    status, answer = request(server, "GET", "/models")
    assert status == 200
    models = {m["task"]: m for m in answer["models"]}
    assert set(models) == {"classify", "generate", "translate"}
    assert models["classify"]["name"] == toy_classifier.stem  # a name, not the server's path
    assert models["classify"]["labels"] == ["negative", "positive"]
    assert models["translate"]["labels"] == []
    assert str(toy_classifier.parent) not in json.dumps(answer)


def test_classify_and_embed_answer_as_the_cli(server, toy_classifier):
    assert post(server, "/classify", {"texts": TEXTS}) == cli_records(
        "classify", "-m", toy_classifier, *TEXTS)
    assert post(server, "/embed", {"texts": TEXTS}) == cli_records(
        "embed", "-m", toy_classifier, *TEXTS)


def test_generate_answers_as_the_cli(server, toy_generator):
    body = {"label": "positive", "n": 3, "seed": 7, "temperature": 0.9}
    records = post(server, "/generate", body)
    assert records == cli_records("generate", "-m", toy_generator, "--label", "positive",
                                  "-n", "3", "--seed", "7", "--temperature", "0.9")
    assert post(server, "/generate", body) == records  # the seed alone decides
    # the CLI's defaults: n 1, seed 0, temperature 0.8, guidance 1
    assert post(server, "/generate", {"label": "negative", "prompt": "the"}) == cli_records(
        "generate", "-m", toy_generator, "--label", "negative", "--prompt", "the")
    ruled = {"label": "positive", "n": 3, "seed": 7, "temperature": 0, "no_repeat_ngram": 1}
    assert post(server, "/generate", ruled) == cli_records(
        "generate", "-m", toy_generator, "--label", "positive", "-n", "3", "--seed", "7",
        "--temperature", "0", "--no-repeat-ngram", "1")


def test_translate_answers_as_the_cli(server, toy_translator):
    texts = ["the cat sleeps", "a dog runs", ""]
    assert post(server, "/translate", {"texts": texts}) == cli_records(
        "translate", "-m", toy_translator, *texts)
    assert post(server, "/translate", {"texts": texts, "beam": 3, "n_best": 2}) == cli_records(
        "translate", "-m", toy_translator, "--beam", "3", "--n-best", "2", *texts)
    [record] = post(server, "/translate", {"texts": texts[:1], "attention": True})
    weights = record.pop("attention")["weights"]
    assert record == post(server, "/translate", {"texts": texts[:1]})[0]
    assert all(abs(sum(row) - 1) < 1e-2 for row in weights)


def test_40_requests_from_8_threads(server):
    jobs = []
    for i in range(40):
        if i % 4 == 0:
            jobs.append(("/classify", {"texts": [TEXTS[i % 2], f"text {i}"]}))
        elif i % 4 == 1:
            jobs.append(("/translate", {"texts": ["the cat sleeps" if i % 8 == 1 else
                                                  "a dog runs"]}))
        elif i % 4 == 2:
            jobs.append(("/generate", {"label": "positive", "n": 2, "seed": i % 3}))
        else:
            jobs.append(("/embed", {"texts": [f"text {i % 5}"]}))
    # the answers one at a time, then all at once
    alone = [post(server, path, body) for path, body in jobs]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda job: post(server, *job), jobs))
    for (path, _body), a, b in zip(jobs, alone, together, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):  # batched with others: the same up to rounding
            assert same(x, y), (path, x, y)


def same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return abs(a - b) <= 1e-3
    return a == b


def test_the_shipped_default_generator_hands_on_labels_it_does_not_know():
    from seqtool.shipped import SHIPPED_MODELS, checkpoints_folder

    if not all((checkpoints_folder() / f).is_file() for f in SHIPPED_MODELS["generate"].values()):
        pytest.skip("no shipped generators here")
    with Running(load_models({"generate": None}, "cpu"), HOST, 0) as srv:
        port = srv.port
        for label in ("positive", "news", "negative"):  # and back to the first generator
            body = {"label": label, "n": 2, "seed": 1, "max_output_length": 12}
            assert post(port, "/generate", body) == cli_records(
                "generate", "--label", label, "-n", "2", "--seed", "1", "--max-output-length", "12")
        status, answer = request(port, "GET", "/models")
        assert [m["name"] for m in answer["models"]] == ["default", "brown-genre"]
        status, answer = request(port, "POST", "/generate", {"label": "sideways"})
        assert status == 400 and "news" in answer["error"]


BAD = [
    ("bad JSON", "/classify", b'{"texts": [', 400),
    ("NaN", "/translate", b'{"texts": ["a"], "beam": NaN}', 400),
    ("not an object", "/classify", b'["a"]', 400),
    ("missing texts", "/classify", b'{}', 400),
    ("missing label", "/generate", b'{"n": 1}', 400),
    ("texts not a list", "/embed", b'{"texts": "a"}', 400),
    ("a text not a string", "/classify", b'{"texts": ["a", 3]}', 400),
    ("empty texts", "/translate", b'{"texts": []}', 400),
    ("beam a string", "/translate", b'{"texts": ["a"], "beam": "5"}', 400),
    ("attention not a bool", "/translate", b'{"texts": ["a"], "attention": 1}', 400),
    ("n_best over beam", "/translate", b'{"texts": ["a"], "beam": 2, "n_best": 3}', 400),
    ("n a bool", "/generate", b'{"label": "positive", "n": true}', 400),
    ("n too large", "/generate", b'{"label": "positive", "n": 51}', 400),
    ("huge temperature", "/generate", b'{"label": "positive", "temperature": 1e999}', 400),
    ("negative temperature", "/generate", b'{"label": "positive", "temperature": -1}', 400),
    ("unknown label", "/generate", b'{"label": "sideways"}', 400),
    ("a lexicon file", "/generate", b'{"label": "positive", "lexicon": "/etc/passwd"}', 400),
    ("unknown field", "/classify", b'{"texts": ["a"], "text": "a"}', 400),
    ("not UTF-8", "/classify", b'{"texts": ["\xff"]}', 400),
    ("too many texts", "/classify", json.dumps({"texts": ["a"] * 9}).encode(), 413),
    ("too long a line", "/embed", json.dumps({"texts": ["a" * 301]}).encode(), 413),
    ("too long a prompt", "/generate",
     json.dumps({"label": "positive", "prompt": "a" * 301}).encode(), 413),
    ("body too large", "/classify", json.dumps({"texts": ["a" * 25_000]}).encode(), 413),
    ("unknown path", "/classify/more", b'{"texts": ["a"]}', 404),
    # compute the server bounds whatever the options' own ranges allow
    ("beam over the server's", "/translate", b'{"texts": ["a"], "beam": 17}', 400),
    ("input over the server's", "/classify", b'{"texts": ["a"], "max_input_length": 513}', 400),
    ("ratio over the server's", "/translate", b'{"texts": ["a"], "max_length_ratio": 4.5}', 400),
    ("long samples", "/generate", b'{"label": "positive", "max_output_length": 513}', 400),
    ("prompt times n", "/generate",
     json.dumps({"label": "positive", "prompt": "a" * 100, "n": 11}).encode(), 413),
    ("a lone surrogate", "/embed", b'{"texts": ["a", "\\ud800"]}', 400),
    ("a model not loaded", "/classify", b'{"texts": ["a"], "model": "other"}', 404),
]


@pytest.mark.parametrize("why, path, raw, status", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_one_line_error_and_the_server_lives_on(server, why, path, raw,
                                                                 status):
    got, answer = request(server, "POST", path, raw=raw)
    assert got == status, answer
    assert list(answer) == ["error"] and answer["error"] and "\n" not in answer["error"]
    assert request(server, "GET", "/health") == (200, {"status": "ok"})


def test_wrong_method_unknown_path_and_no_length(server):
    assert request(server, "GET", "/classify")[0] == 405
    assert request(server, "POST", "/health", {})[0] == 405
    assert request(server, "DELETE", "/translate")[0] == 405
    assert request(server, "GET", "/nowhere")[0] == 404
    conn = http.client.HTTPConnection(HOST, server, timeout=30)
    try:  # no Content-Length: 411
        conn.putrequest("POST", "/classify")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 411
        assert "error" in json.loads(response.read())
    finally:
        conn.close()
    # garbage instead of HTTP
    with socket.create_connection((HOST, server), timeout=30) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        assert b" 400 " in s.recv(4096).split(b"\r\n")[0]
    assert request(server, "GET", "/health")[0] == 200


def test_keep_alive_connection_answers_many_requests(server):
    conn = http.client.HTTPConnection(HOST, server, timeout=30)
    try:
        for _ in range(3):
            conn.request("POST", "/classify", body=json.dumps({"texts": ["a"]}))
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["results"]
    finally:
        conn.close()


# ----------------------------------------------------------------------------- the process


def start(toy_classifier, toy_generator, *options) -> tuple[subprocess.Popen, int]:
    """`seqtool serve` on a free port; waits for its 'listening on' line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "seqtool.cli", "serve", "--port", "0", "--tasks",
         "classify,generate",
         "-m", f"classify={toy_classifier}", "-m", f"generate={toy_generator}", *options],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    line = process.stderr.readline()  # blocks until the line, or EOF if it dies
    if "listening on http://127.0.0.1:" not in line:
        process.kill()
        raise AssertionError(f"no listening line: {line!r} {process.stderr.read()}")
    return process, int(line.split("127.0.0.1:")[1].split()[0])


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_lets_the_request_in_flight_finish(toy_classifier, toy_generator, signum,
                                                    code):
    process, port = start(toy_classifier, toy_generator)
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        assert request(port, "GET", "/health")[0] == 200
        body = json.dumps({"label": "positive", "n": 20, "seed": 3}).encode()
        # a request in flight: its headers and half its body are sent when the signal comes
        conn.putrequest("POST", "/generate")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:10])
        time.sleep(0.5)
        process.send_signal(signum)
        time.sleep(0.5)
        assert process.poll() is None  # waits for the request
        conn.send(body[10:])
        response = conn.getresponse()
        assert response.status == 200
        assert len(json.loads(response.read())["results"]) == 20
        assert process.wait(60) == code
        assert "stopping" in process.stderr.read()
    finally:
        conn.close()
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_bad_model_option_is_one_line(toy_classifier):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "seqtool.cli", "serve", "-m", "classify"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "TASK=MODEL" in out.stderr
    out = subprocess.run([sys.executable, "-m", "seqtool.cli", "serve", "--tasks", "classify",
                          "-m", "classify=/no/such/file.pt"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_the_command_imports_no_torch():
    code = ("import sys; import seqtool.cli.serve as s; assert s.serve.name == 'serve'; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "False"
