"""`seqtool serve`: the loaded models answer HTTP requests with JSON.

    service.py  what each endpoint answers (fields checked), and the batching
    http.py     the handler, the server, and `run` (signals)


Built on the standard library's `http.server.ThreadingHTTPServer` (a thread per connection):
no new dependency, and it is meant for the loopback address (127.0.0.1 by default), not for
the open internet. Each answer is {"results": [...]}, every record the CLI's `--format jsonl`
record for the same input; errors are {"error": "one line"} with a 4xx status.

Thread safety: each model has one lock, so a model runs one batch at a time. Requests that
arrive while a model is busy wait in a queue and are then answered together in one batch
(classify, embed, translate with the same options), each request getting its own slice:
batching costs nothing when the server is idle and happens exactly when it helps.
Generation is not batched: its samples depend only on the request's own seed, as the CLI's.
"""

from seqtool.serve.http import Server, build_server, load_models, run
from seqtool.serve.service import Batcher, Limits, Service

__all__ = ["Batcher", "Limits", "Server", "Service", "build_server", "load_models", "run"]
