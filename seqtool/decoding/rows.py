"""The rows of a decoder's memory: its parts are arrays, or lists / tuples / dicts of them, with
one row per hypothesis; the searches keep, reorder and join rows through these, whatever the
arrays are (numpy or torch)."""

from __future__ import annotations

from typing import Any


def map_rows(parts: Any, fn) -> Any:
    """`fn` applied to every array of a memory part (arrays, lists / tuples of them, dicts)."""
    if isinstance(parts, dict):
        return {key: map_rows(value, fn) for key, value in parts.items()}
    if isinstance(parts, (list, tuple)):
        return type(parts)(map_rows(p, fn) for p in parts)
    return fn(parts)


def join_rows(parts: list[Any], concat) -> Any:
    """Memory parts of the same shape joined along their rows with `concat`."""
    first = parts[0]
    if isinstance(first, dict):
        return {key: join_rows([p[key] for p in parts], concat) for key in first}
    if isinstance(first, (list, tuple)):
        return type(first)(join_rows([p[i] for p in parts], concat) for i in range(len(first)))
    return concat(parts)
