"""`seqtool serve` under heavy requests (issue 31): the server's memory, and how long a light
request waits beside a heavy one of the same task, against the same light requests on the
idle server in the same run.

    python benchmarks/serve_load.py [--rounds 5]

One server (`seqtool serve`, the shipped models) answers, per task: light requests one after
another while idle; then the heaviest request the default limits allow (and the issue's
requests, which they refuse), with the same light requests sent while it runs. The server's
resident memory (VmRSS) is sampled every 50 ms. Writes benchmarks/results/serve-load.{md,json}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ROOT, output_options, record, table, use_output

LIGHT = {"classify": ("/classify", {"texts": ["A gorgeous, witty film."]}),
         "translate": ("/translate", {"texts": ["Dieu est amour."]}),
         "generate": ("/generate", {"label": "positive", "n": 1, "seed": 1})}
WORDS = ("Et Dieu dit que la lumière soit et la lumière fut ")
# the heaviest each default limit allows
HEAVY = {"classify": ("/classify", {"texts": [(WORDS * 200)[:10_000]] * 90}),  # ~1 MB body
         "translate": ("/translate", {"texts": [(WORDS * 200)[:10_000]], "beam": 16,
                                      "max_length_ratio": 4.0}),
         "generate": ("/generate", {"label": "positive", "n": 10, "prompt": "the " * 250,
                                    "max_output_length": 512})}
# the issue's requests: refused now
ISSUE = {"translate": ("/translate", {"texts": [(WORDS * 200)[:10_000]], "beam": 32,
                                      "max_input_length": 1_000_000}),
         "generate": ("/generate", {"label": "positive", "n": 10, "prompt": "a" * 10_000})}


def post(port: int, path: str, body: dict, timeout: float = 600) -> tuple[int, float]:
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body, ensure_ascii=False).encode())
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start
    finally:
        conn.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0.0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="light requests per phase")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    process = subprocess.Popen([sys.executable, "-m", "seqtool.cli", "serve", "--port", "0"],
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = process.stderr.readline()
    port = int(line.split("127.0.0.1:")[1].split()[0])
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
    rows, results = [], {}
    try:
        for task in LIGHT:  # warm up (lexicons, engines), then the idle server
            post(port, *LIGHT[task])
        idle_rss = rss_mb(process.pid)
        for task, (path, body) in LIGHT.items():
            idle = [post(port, path, body)[1] for _ in range(args.rounds)]
            sampler = Sampler(process.pid)
            sampler.start()
            heavy: dict = {}
            thread = threading.Thread(target=lambda t=task, h=heavy: h.update(
                zip(("status", "seconds"), post(port, *HEAVY[t]))))
            thread.start()
            time.sleep(0.5)  # the heavy request has the model
            loaded, finished_before = [], 0
            for _ in range(args.rounds):
                status, seconds = post(port, path, body)
                assert status == 200, status
                loaded.append(seconds)
                finished_before += not heavy
            thread.join()
            sampler.running = False
            sampler.join()
            issue = post(port, *ISSUE[task])[0] if task in ISSUE else None
            row = {"idle_ms": 1000 * statistics.median(idle),
                   "beside_heavy_ms": 1000 * statistics.median(loaded),
                   "light_before_heavy_done": f"{finished_before}/{args.rounds}",
                   "heavy_status": heavy["status"], "heavy_s": heavy["seconds"],
                   "peak_rss_mb": sampler.peak, "issue_request_status": issue}
            row["latency_ratio"] = row["beside_heavy_ms"] / row["idle_ms"]
            row["rss_ratio"] = sampler.peak / idle_rss
            results[task] = row
            rows.append([task, row["idle_ms"], row["beside_heavy_ms"], row["latency_ratio"],
                         row["light_before_heavy_done"], row["heavy_status"], row["heavy_s"],
                         row["peak_rss_mb"], row["rss_ratio"], issue or "-"])
    finally:
        process.terminate()
        code = process.wait(120)
    markdown = (
        f"Idle server RSS {idle_rss:.0f} MB; exit code after SIGTERM {code}. Light request "
        f"latency: median of {args.rounds}, idle, then beside the heaviest request the default "
        "limits allow (classify: 90 texts of 10,000 characters, a 1 MB body; translate: one "
        "of 10,000 characters at beam 16, ratio 4; generate: n 10 of a 1,000-character "
        "prompt, 512 pieces). The issue's requests (translate beam 32, max_input_length 1,000,000; "
        "generate n 10 of a 10,000-character prompt) are refused.\n\n" + table(
            ["task", "idle ms", "beside heavy ms", "ratio", "light before heavy ended",
             "heavy status", "heavy s", "peak RSS MB", "RSS / idle", "issue's request"], rows))
    record("serve-load", {"idle_rss_mb": idle_rss, "exit_code": code, "tasks": results,
                          "heavy_paths": {k: v[0] for k, v in HEAVY.items()}}, markdown)


if __name__ == "__main__":
    main()
