"""The append-only results store: one JSON file per finished job under ``results/<experiment>/``.

Layout::

    results/<experiment>/jobs/<job_id>.json            a job that finished (written once)
    results/<experiment>/failed/<job_id>.<time>.json   each failed attempt (kept as history)

Every file is written to a temporary name in the same folder and moved into place with
:func:`os.replace`, so a killed process leaves either the whole record or none of it (temporary
files start with ``.`` and are ignored). Nothing is ever overwritten or deleted: a job with a
record in ``jobs/`` is done; a job with only failures is run again on resume.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .experiment import RunnerError

__all__ = ["ResultStore", "to_json"]


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays/scalars, torch tensors
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(
        f"a {type(obj).__name__} is not JSON-serialisable; return numbers, strings, "
        "lists and dicts from an experiment"
    )


def _finite(obj: Any) -> Any:
    """NaN and inf become strings so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def to_json(record: Mapping[str, Any]) -> str:
    """``record`` as standard JSON (numpy/torch values converted, NaN/inf as strings).

    Raises:
        TypeError: a value cannot be converted.

    >>> import json, numpy as np, torch
    >>> json.loads(to_json({"x": np.float32(0.5), "t": torch.tensor([1, 2]), "n": float("nan")}))
    {'n': 'nan', 't': [1, 2], 'x': 0.5}
    """
    plain = json.loads(json.dumps(record, default=_default, allow_nan=True))
    return json.dumps(_finite(plain), indent=1, sort_keys=True, allow_nan=False)


def _atomic_write(path: Path, text: str, *, exclusive: bool = False) -> bool:
    """Write ``text`` to a temporary file and move it to ``path`` in one step.

    ``exclusive``: never replace an existing ``path`` (``os.link`` fails if it exists, even
    when two processes race for it); returns False if it existed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class ResultStore:
    """Records of one experiment under ``root/<experiment>/``.

    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp(), "demo")
    >>> _ = store.write({"job_id": "abc", "status": "ok", "result": {"x": 1.0}})
    >>> store.done_ids(), store.records()[0]["result"]
    ({'abc'}, {'x': 1.0})
    """

    def __init__(self, root: str | os.PathLike[str], experiment: str) -> None:
        self.root = Path(root)
        self.experiment = experiment
        self.path = self.root / experiment
        if self.path.exists() and not self.path.is_dir():
            raise RunnerError(f"results path {str(self.path)!r} exists and is not a folder")

    @property
    def jobs_dir(self) -> Path:
        return self.path / "jobs"

    @property
    def failed_dir(self) -> Path:
        return self.path / "failed"

    def write(self, record: Mapping[str, Any]) -> Path:
        """Store a finished (``status == "ok"``) or failed record atomically; return its path.

        A second ``ok`` record for a job already done is refused (the store is append-only).
        """
        jid = record.get("job_id")
        if not isinstance(jid, str) or not jid or "/" in jid or jid.startswith("."):
            raise RunnerError(f"a record needs a valid 'job_id', got {jid!r}")
        text = to_json(record)
        if record.get("status") == "ok":
            path = self.jobs_dir / f"{jid}.json"
            if not _atomic_write(path, text, exclusive=True):
                raise RunnerError(f"job {jid} already has a record at {path}; records are final")
        else:
            path = self.failed_dir / f"{jid}.{time.time_ns()}.json"
            _atomic_write(path, text)
        return path

    @staticmethod
    def _read(paths: Iterable[Path]) -> list[dict[str, Any]]:
        out = []
        for p in paths:
            if p.name.startswith("."):
                continue
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, json.JSONDecodeError) as exc:
                raise RunnerError(f"unreadable record {p}: {exc}; move it away and resume") from exc
        return out

    def done_ids(self) -> set[str]:
        """Ids of the jobs that finished."""
        if not self.jobs_dir.is_dir():
            return set()
        return {p.stem for p in self.jobs_dir.glob("*.json") if not p.name.startswith(".")}

    def records(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Finished records (all, or those of ``ids``, in that order)."""
        if ids is None:
            return (
                self._read(sorted(self.jobs_dir.glob("*.json"))) if self.jobs_dir.is_dir() else []
            )
        done = self.done_ids()
        return self._read(self.jobs_dir / f"{i}.json" for i in ids if i in done)

    def failures(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The latest failed attempt of every job that has no finished record."""
        if not self.failed_dir.is_dir():
            return []
        want = None if ids is None else set(ids)
        done = self.done_ids()
        latest: dict[str, Path] = {}
        for p in sorted(self.failed_dir.glob("*.json"), key=lambda p: int(p.name.split(".")[1])):
            jid = p.name.split(".")[0]
            if jid not in done and (want is None or jid in want) and not p.name.startswith("."):
                latest[jid] = p
        return self._read(latest.values())
