"""`seqtool serve`: the loaded models answer HTTP requests with JSON.

    schema.py   each endpoint's request, a pydantic model generated from seqtool.config
    service.py  worker threads per model: a bounded queue, answered in turns and batches
    app.py      the Starlette application: routes, bodies, errors, the bearer token
    server.py   uvicorn under it: the socket, read deadlines, signals and exit codes

Each answer is {"results": [...]}, every record the CLI's `--format jsonl` record for the same
input; errors are {"error": "one line"} with a 4xx or 5xx status. Requests that wait for the
same model with the same options are answered in one batch, each its own slice; a heavy
request gets the model one chunk at a time, between the light requests' turns; a request past
--request-timeout is answered 503 or 504 and its work stops at the next turn. Generation is
not batched: its samples depend only on the request's own seed, as the CLI's.
"""

from seqtool.serve.schema import RequestError, request_models
from seqtool.serve.server import Running, load_models, run
from seqtool.serve.service import Job, Service, Worker

__all__ = ["Job", "RequestError", "Running", "Service", "Worker", "load_models",
           "request_models", "run"]
