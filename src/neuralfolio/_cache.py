"""Fingerprints and Parquet files that carry the parameters that produced them."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["fingerprint", "read_frame", "write_frame"]

_META_KEY = b"neuralfolio"


def fingerprint(frame: pd.DataFrame, params: dict[str, Any]) -> str:
    """SHA-256 of a frame's dates, columns and values together with ``params``."""
    h = hashlib.sha256()
    h.update(pd.DatetimeIndex(frame.index).asi8.tobytes())
    h.update(json.dumps([str(c) for c in frame.columns]).encode())
    h.update(frame.to_numpy(dtype="float64").tobytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()


def write_frame(path: Path, frame: pd.DataFrame, meta: dict[str, Any]) -> None:
    """Write ``frame`` to Parquet with ``meta`` (JSON) in the schema metadata, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame)
    merged = {**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()}
    table = table.replace_schema_metadata(merged)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; cached labels are ordinary files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_frame(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a frame written by :func:`write_frame` and its metadata."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
    return table.to_pandas(), meta
