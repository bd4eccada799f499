"""Versioned models on disk, with crash-safe registration and activation.

A :class:`ModelRegistry` keeps every registered :class:`~neuralfolio.scratch.runtime.
NumpyAllocator` under one root directory::

    root/
        active.json                      {"name", "version", "activated"}
        models/<name>/v<version>/
            runtime.safetensors          the runtime's parameters
            runtime.json                 its manifest
            meta.json                    caller's meta + created, kind, assets, lookback
        models/<name>/v<version>/        a rule version (no network: 1/N, an optimizer)
            rule.json                    the rule (:func:`rule_policy`)
            meta.json

Both writes that matter are atomic, so a process killed at any instant (``SIGKILL``, power
loss after the fsyncs) leaves the registry as it was before the write or as it is after it:

* :meth:`ModelRegistry.register` writes the version into ``models/<name>/.tmp-<uuid>/``,
  fsyncs the files and the directory, then renames it to ``v<version>``; a ``v<n>``
  directory is therefore always complete.
* :meth:`ModelRegistry.activate` writes ``active.json.tmp-<uuid>``, fsyncs it, replaces
  ``active.json`` with it and fsyncs the root directory; ``active.json`` is always a whole
  file, naming the old or the new version.

Leftover temporary entries from a killed writer are ignored by every reader and removed
by :meth:`ModelRegistry.cleanup`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuralfolio.errors import ConfigError, ModelError
from neuralfolio.scratch.runtime import NumpyAllocator

__all__ = ["RULES", "ModelRecord", "ModelRegistry", "rule_policy"]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_VERSION_DIR = re.compile(r"v([1-9][0-9]*)")
_TMP = ".tmp-"
_ACTIVE = "active.json"
_META = "meta.json"
_FILES = ("runtime.safetensors", "runtime.json", _META)
_RULE = "rule.json"
_RULE_FILES = (_RULE, _META)
RULES = {"equal_weight": (), "inverse_volatility": ("window",),
         "optimizer": ("objective", "window")}
"""Rules a registry version may hold instead of a network, and their parameters."""
_RESERVED_META = ("created", "kind", "assets", "lookback")
_ACTIVATE_HINT = ("activate another version (POST /v1/models/NAME/activate on the service, "
                  "ModelRegistry(root).activate(name, version), or `neuralfolio retrain`)")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in directory ``path`` durable (a no-op where the OS
    cannot open directories, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rule_policy(rule: dict[str, Any]) -> Any:
    """The policy of a rule version: ``{"rule": "equal_weight"}``,
    ``{"rule": "inverse_volatility", "window": 126}`` or ``{"rule": "optimizer",
    "objective": "min_variance", "window": 126}``.

    Raises
    ------
    ConfigError
        An unknown rule or a bad parameter.
    """
    from neuralfolio.policies import EqualWeight, InverseVolatility, OptimizerPolicy

    if not isinstance(rule, dict) or rule.get("rule") not in RULES:
        raise ConfigError(f"a rule is a dict with 'rule' one of {sorted(RULES)}, got "
                          f"{rule!r}.")
    name = rule["rule"]
    extra = sorted(set(rule) - {"rule", *RULES[name]})
    if extra:
        raise ConfigError(f"rule {name!r} takes {list(RULES[name]) or 'no parameters'}; "
                          f"unknown {extra}.")
    window = rule.get("window", 126)
    if "window" in RULES[name] and not (isinstance(window, int) and window >= 2):
        raise ConfigError(f"rule {name!r}: window must be an integer >= 2, got {window!r}.")
    if name == "equal_weight":
        return EqualWeight()
    if name == "inverse_volatility":
        return InverseVolatility(window)
    return OptimizerPolicy(str(rule.get("objective", "min_variance")), window)


def _age(path: Path) -> float:
    """Seconds since ``path`` or, for a directory, anything directly in it last changed."""
    try:
        newest = path.stat().st_mtime
        if path.is_dir():
            for child in path.iterdir():
                with contextlib.suppress(OSError):
                    newest = max(newest, child.stat().st_mtime)
    except OSError:
        return 0.0
    return time.time() - newest


@dataclass(frozen=True)
class ModelRecord:
    """One registered version of a model.

    Parameters
    ----------
    name : str
        The model's name.
    version : int
        Its version, from 1.
    path : Path
        The version's directory (``root/models/<name>/v<version>``).
    meta : dict
        The contents of its ``meta.json``.
    """

    name: str
    version: int
    path: Path
    meta: dict

    @property
    def label(self) -> str:
        """``"<name>:<version>"``, as written in audit logs and responses."""
        return f"{self.name}:{self.version}"

    @property
    def is_rule(self) -> bool:
        """Whether the version holds a rule (1/N, an optimizer) rather than a network."""
        return self.meta.get("kind") == "rule"


class ModelRegistry:
    """Versioned NumPy runtimes under a root directory, one of them active.

    Parameters
    ----------
    root : str or Path
        The registry's directory; it and ``root/models`` are created when missing.
    stale_after : float
        On construction, temporary entries left by killed writers are removed when nothing
        in them changed for this many seconds. Younger ones are left alone because another
        process may still be writing them; :meth:`cleanup` removes them all.

    Notes
    -----
    Several processes may use the same root at once: registrations of the same name
    never share a version number, and readers never see a partial version or a partial
    ``active.json``.
    """

    def __init__(self, root: str | Path, *, stale_after: float = 300.0) -> None:
        self.root = Path(root)
        self.models_dir = self.root / "models"
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the model registry at {self.root}: {exc}; "
                              "pass a writable directory.") from exc
        self.stale_after = float(stale_after)
        self.cleanup(older_than=self.stale_after)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_name(name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
            raise ConfigError(f"invalid model name {name!r}; use letters, digits, '_', '.' "
                              "and '-' only (for example 'dense-20')")
        return name

    def _names(self) -> list[str]:
        return sorted(p.name for p in self.models_dir.iterdir()
                      if p.is_dir() and _NAME.fullmatch(p.name) and p.name not in (".", ".."))

    def _versions(self, name: str) -> list[int]:
        """Complete versions of ``name`` (every directory ``v<n>`` holding all files)."""
        d = self.models_dir / name
        if not d.is_dir():
            return []
        out = []
        for p in d.iterdir():
            m = _VERSION_DIR.fullmatch(p.name)
            if m and (all((p / f).is_file() for f in _FILES)
                      or all((p / f).is_file() for f in _RULE_FILES)):
                out.append(int(m.group(1)))
        return sorted(out)

    def _taken(self, name: str) -> int:
        """The largest version number in use, complete or not."""
        nums = [int(m.group(1)) for p in (self.models_dir / name).iterdir()
                if (m := _VERSION_DIR.fullmatch(p.name))]
        return max(nums, default=0)

    def _record(self, name: str, version: int) -> ModelRecord:
        path = self.models_dir / name / f"v{version}"
        try:
            meta = json.loads((path / _META).read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read {path / _META}: {exc}; the version is damaged, "
                             f"delete {path} and register the model again.") from exc
        return ModelRecord(name, version, path, meta)

    def _available(self) -> str:
        names = self._names()
        if not names:
            return f"the registry at {self.root} is empty; register a model first"
        parts = []
        for n in names:
            vs = self._versions(n)
            parts.append(f"{n} (versions {', '.join(map(str, vs))})" if vs
                         else f"{n} (no complete version)")
        return "registered: " + "; ".join(parts)

    # --------------------------------------------------------------------- write
    def register(self, runtime: NumpyAllocator, name: str,
                 meta: dict[str, Any] | None = None) -> ModelRecord:
        """Store ``runtime`` as the next version of ``name``.

        Parameters
        ----------
        runtime : NumpyAllocator
            The model to store (saved with its ``save`` method).
        name : str
            Model name, ``[A-Za-z0-9_.-]+``.
        meta : dict, optional
            JSON-serializable information kept in ``meta.json`` (training window, scores,
            ...). The keys ``created``, ``kind``, ``assets`` and ``lookback`` are filled in
            by the registry.

        Returns
        -------
        ModelRecord
            The new version (1 for a new name, else the largest version + 1).

        Raises
        ------
        ConfigError
            A bad name, ``runtime`` not a NumpyAllocator, or meta that is not
            JSON-serializable or uses a reserved key.
        """
        self._check_name(name)
        if not isinstance(runtime, NumpyAllocator):
            raise ConfigError(f"the registry stores NumpyAllocator runtimes, not "
                              f"{type(runtime).__name__}; convert a trained model with "
                              ".to_numpy_runtime() first.")
        meta = self._meta(meta, kind=runtime.kind, assets=list(runtime.assets),
                          lookback=int(runtime.lookback))
        return self._write(name, meta, runtime.save, _FILES)

    def register_rule(self, rule: dict[str, Any], name: str,
                      meta: dict[str, Any] | None = None) -> ModelRecord:
        """Store a rule (1/N, inverse volatility, an optimizer; see :func:`rule_policy`) as
        the next version of ``name``: a service can serve it like a network (its answers
        are the rule's, decided by the same stepper as in the walk-forward backtest).

        Raises
        ------
        ConfigError
            A bad name, rule or meta.
        """
        self._check_name(name)
        policy = rule_policy(rule)
        rule = dict(rule)
        extra = {"objective": rule.get("objective", "min_variance"),
                 "window": rule.get("window", 126)} if rule["rule"] == "optimizer" else {}
        meta = self._meta({**extra, **(meta or {})}, kind="rule", assets=[],
                          lookback=int(policy.lookback))
        text = json.dumps(rule, indent=2)
        return self._write(name, meta, lambda d: (d / _RULE).write_text(text), _RULE_FILES)

    @staticmethod
    def _meta(meta: dict[str, Any] | None, **filled: Any) -> str:
        meta = dict(meta or {})
        clash = sorted(set(meta) & set(_RESERVED_META))
        if clash:
            raise ConfigError(f"meta keys {clash} are filled in by the registry; rename them "
                              f"(reserved: {', '.join(_RESERVED_META)}).")
        meta.update(created=_now(), **filled)
        try:
            return json.dumps(meta, indent=2)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model meta must be JSON-serializable: {exc}; pass plain "
                              "numbers, strings, lists and dicts.") from exc

    def _write(self, name: str, meta_text: str, save: Any, files: tuple[str, ...]
               ) -> ModelRecord:
        """Write a version atomically: ``save(tmp_dir)`` and the meta, then rename."""
        model_dir = self.models_dir / name
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f"{_TMP}{uuid.uuid4().hex}"
        try:
            tmp.mkdir()
            save(tmp)
            (tmp / _META).write_text(meta_text)
            for f in files:
                _fsync_file(tmp / f)
            _fsync_dir(tmp)
            version = self._taken(name) + 1
            while True:
                target = model_dir / f"v{version}"
                if not target.exists():
                    try:
                        os.rename(tmp, target)
                        break
                    except OSError:
                        # Another writer took this number between the check and the
                        # rename (a non-empty target is never replaced): try the next.
                        if not target.exists():
                            raise
                version += 1
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(model_dir)
        _fsync_dir(self.models_dir)
        return ModelRecord(name, version, target, json.loads(meta_text))

    def activate(self, name: str, version: int | None = None) -> ModelRecord:
        """Make a version the active one, after checking that it loads.

        Parameters
        ----------
        name : str
        version : int, optional
            Default: the latest version of ``name``.

        Returns
        -------
        ModelRecord
            The version now active.

        Raises
        ------
        ModelError
            The version does not exist or does not load.
        """
        record = self.get(name, version)
        self.load_policy(record)
        payload = json.dumps({"name": record.name, "version": record.version,
                              "activated": _now()})
        tmp = self.root / f"{_ACTIVE}{_TMP}{uuid.uuid4().hex}"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / _ACTIVE)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(self.root)
        return record

    def cleanup(self, older_than: float = 0.0) -> list[Path]:
        """Remove temporary entries left by interrupted writes.

        Parameters
        ----------
        older_than : float
            Only remove entries unchanged for this many seconds (0: all). A writer in
            another process whose temporary entry is removed fails with an error.

        Returns
        -------
        list of Path
            What was removed.
        """
        removed = []
        candidates = list(self.root.glob(f"{_ACTIVE}{_TMP}*"))
        for d in self.models_dir.iterdir():
            if d.is_dir():
                candidates.extend(d.glob(f"{_TMP}*"))
        for p in candidates:
            if older_than > 0 and _age(p) < older_than:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
            if not p.exists():
                removed.append(p)
        return removed

    # ---------------------------------------------------------------------- read
    def list(self, name: str | None = None) -> list[ModelRecord]:
        """Complete versions, sorted by (name, version); of one name if given."""
        names = [self._check_name(name)] if name is not None else self._names()
        return [self._record(n, v) for n in names for v in self._versions(n)]

    def get(self, name: str, version: int | None = None) -> ModelRecord:
        """One version of ``name``, the latest if ``version`` is None.

        Raises
        ------
        ModelError
            No such name or version; the message lists what is registered.
        """
        self._check_name(name)
        versions = self._versions(name)
        if not versions:
            raise ModelError(f"no model named {name!r} in {self.root}; "
                             f"{self._available()}.")
        if version is None:
            version = versions[-1]
        elif version not in versions:
            raise ModelError(f"model {name!r} has no version {version!r}; its versions are "
                             f"{', '.join(map(str, versions))}.")
        return self._record(name, version)

    def load(self, record: ModelRecord) -> NumpyAllocator:
        """The runtime stored for ``record``.

        Raises
        ------
        ModelError
            Its files are missing or damaged.
        """
        if record.is_rule:
            raise ModelError(f"{record.label} is a rule version, not a network; load it "
                             "with load_policy.")
        try:
            return NumpyAllocator.load(record.path)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"model {record.label} at {record.path} does not load "
                             f"({type(exc).__name__}: {exc}); delete that directory and "
                             "register the model again.") from exc

    def load_policy(self, record: ModelRecord) -> Any:
        """The version as a policy: a :class:`~neuralfolio.policies.RuntimePolicy` of its
        network, or its rule's policy.

        Raises
        ------
        ModelError
            Its files are missing or damaged.
        """
        from neuralfolio.policies import RuntimePolicy

        if not record.is_rule:
            return RuntimePolicy(self.load(record))
        try:
            return rule_policy(json.loads((record.path / _RULE).read_text()))
        except (OSError, ValueError) as exc:
            raise ModelError(f"rule {record.label} at {record.path} does not load "
                             f"({type(exc).__name__}: {exc}); delete that directory and "
                             "register the rule again.") from exc

    def active(self) -> ModelRecord | None:
        """The active version, or None when none was activated.

        Raises
        ------
        ModelError
            ``active.json`` names a version that is missing or incomplete.
        """
        self.cleanup(older_than=self.stale_after)
        path = self.root / _ACTIVE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            name, version = state["name"], int(state["version"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path} is unreadable ({exc}); {_ACTIVATE_HINT}.") from exc
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
            raise ModelError(f"{path} names an invalid model {name!r}; {_ACTIVATE_HINT}.")
        if version not in self._versions(name):
            raise ModelError(f"the active model {name}:{version} ({path}) is missing or "
                             f"incomplete in {self.models_dir}; {_ACTIVATE_HINT}; "
                             f"{self._available()}.")
        return self._record(name, version)
