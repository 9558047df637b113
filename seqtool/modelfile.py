"""The model file: one file per trained model that loads without torch and without unpickling.

Its layout is safetensors' (https://huggingface.co/docs/safetensors), so any safetensors reader
can open the weights: 8 bytes little-endian header size N, N bytes of JSON header (each tensor's
dtype, shape and byte range, and a `__metadata__` map of strings), then the tensors' bytes.
seqtool keeps in the metadata the task, the model configuration, the labels and the training
record (JSON strings), and stores the tokenizers as byte tensors `tokenizer/SIDE`; a weight
tied to another (the same values under two names) is stored once, the other name an alias.

Integrity: `digest` is the SHA-256 of the whole file with the 64 hex digits of the digest itself
read as zeros, so a change of any byte (weights, configuration, padding) makes it differ.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqtool.errors import SeqtoolError, os_error

FORMAT = "seqtool-model"
FORMAT_VERSION = 2
SUFFIX = ".seqtool"
TOKENIZER_PREFIX = "tokenizer/"
_PLACEHOLDER = "0" * 64
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64,
           "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v).str: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 2**20  # a header is metadata and tensor names: far below this


@dataclass
class ModelFile:
    """What a model file holds: numpy weights (views of the file where no conversion is
    needed), tokenizer bytes, and the metadata strings (decoded JSON)."""

    task: str
    model_config: dict[str, Any]
    labels: list[Any]
    meta: dict[str, Any]
    weights: dict[str, np.ndarray]
    tokenizers: dict[str, bytes]


def is_model_file(path: str | Path) -> bool:
    """Whether `path` starts like a safetensors file (a torch checkpoint is a zip: `PK`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    size = struct.unpack("<Q", head[:8])[0]
    return 0 < size < _MAX_HEADER and head[8:9] == b"{"


def write(path: str | Path, task: str, model_config: dict[str, Any], labels: list[Any],
          meta: dict[str, Any], weights: dict[str, np.ndarray], tokenizers: dict[str, bytes],
          atomic_write) -> None:
    """Write a model file through `atomic_write(path, data)` (temp file, then rename)."""
    tensors: dict[str, np.ndarray] = {}
    aliases: dict[str, str] = {}  # a tied weight (the same values under two names) once
    seen: dict[tuple, str] = {}
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        key = (array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).digest())
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
            tensors[name] = array
    tensors.update({TOKENIZER_PREFIX + side: np.frombuffer(data, np.uint8)
                    for side, data in tokenizers.items()})
    header: dict[str, Any] = {"__metadata__": {
        "format": FORMAT, "format_version": str(FORMAT_VERSION), "task": task,
        "model_config": json.dumps(model_config, sort_keys=True),
        "labels": json.dumps(labels), "meta": json.dumps(meta, sort_keys=True),
        "aliases": json.dumps(aliases, sort_keys=True), "digest": _PLACEHOLDER}}
    offset = 0
    for name in sorted(tensors):
        array = tensors[name]
        dtype = _NAMES.get(array.dtype.str)
        if dtype is None:
            raise ValueError(f"cannot store {name!r} of dtype {array.dtype}")
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # tensors start 8-byte aligned
    data = bytearray(struct.pack("<Q", len(text)) + text)
    for name in sorted(tensors):
        data += tensors[name].tobytes()
    digest = hashlib.sha256(data).hexdigest()
    at = data.find(b'"digest":"' + _PLACEHOLDER.encode()) + len('"digest":"')
    data[at:at + 64] = digest.encode()
    atomic_write(Path(path), bytes(data))


def read(path: str | Path, verify: bool = True) -> ModelFile:
    """Read and check a model file; any damage ends in one SeqtoolError naming the file."""
    name = str(path)

    def damaged(what: str) -> SeqtoolError:
        return SeqtoolError(f"damaged model file: {what}", name)

    try:
        with open(path, "rb") as f:
            try:
                buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                raise damaged("empty") from None
    except OSError as e:
        raise os_error(e, Path(path), "cannot read") from None
    if len(buffer) < 8:
        raise damaged("too short")
    size = struct.unpack("<Q", buffer[:8])[0]
    if not 0 < size <= min(_MAX_HEADER, len(buffer) - 8):
        raise damaged("header size out of range")
    try:
        header = json.loads(bytes(buffer[8:8 + size]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise damaged("header is not valid JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise damaged("no metadata")
    metadata = header.pop("__metadata__")
    if metadata.get("format") != FORMAT:
        raise SeqtoolError("not a seqtool model file", name)
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise SeqtoolError("model file written by another seqtool version; please upgrade",
                           name)
    if verify:
        _verify(buffer, size, metadata.get("digest"), damaged)

    def json_field(key: str, kind: type) -> Any:
        try:
            value = json.loads(metadata[key])
        except (KeyError, TypeError, ValueError):
            raise damaged(f"{key!r} is missing or not valid JSON") from None
        if not isinstance(value, kind):
            raise damaged(f"{key!r} is not a JSON {kind.__name__}")
        return value

    data_start, data_size = 8 + size, len(buffer) - 8 - size
    weights: dict[str, np.ndarray] = {}
    tokenizers: dict[str, bytes] = {}
    for key, entry in header.items():
        try:
            dtype = np.dtype(_DTYPES[entry["dtype"]])
            shape = [int(n) for n in entry["shape"]]
            begin, end = (int(n) for n in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise damaged(f"tensor {key!r} is badly described") from None
        count = int(np.prod(shape)) if shape else 1
        if min(shape, default=0) < 0 or not 0 <= begin <= end <= data_size \
                or end - begin != count * dtype.itemsize:
            raise damaged(f"tensor {key!r} does not fit the file")
        array = np.frombuffer(buffer, dtype, count, data_start + begin).reshape(shape)
        if key.startswith(TOKENIZER_PREFIX):
            tokenizers[key[len(TOKENIZER_PREFIX):]] = array.tobytes()
        else:
            weights[key] = array
    aliases = json_field("aliases", dict) if "aliases" in metadata else {}
    for name, target in aliases.items():
        if target not in weights:
            raise damaged(f"weight {name!r} names a missing weight")
        weights[name] = weights[target]
    return ModelFile(task=str(metadata.get("task")),
                     model_config=json_field("model_config", dict),
                     labels=json_field("labels", list), meta=json_field("meta", dict),
                     weights=weights, tokenizers=tokenizers)


def _verify(buffer: mmap.mmap, header_size: int, digest: Any, damaged) -> None:
    """The file's SHA-256 with the stored digest read as zeros must be the stored digest."""
    if not isinstance(digest, str) or len(digest) != 64:
        raise damaged("no digest")
    marker = b'"digest":"' + digest.encode("ascii", "replace") + b'"'
    at = buffer.find(marker, 8, 8 + header_size)
    if at < 0:
        raise damaged("no digest")
    at += len('"digest":"')
    sha = hashlib.sha256()
    sha.update(buffer[:at])
    sha.update(_PLACEHOLDER.encode())
    sha.update(memoryview(buffer)[at + 64:])
    if sha.hexdigest() != digest:
        raise damaged("its bytes differ from those it was written with (digest differs); "
                      "restore it or train it again")
