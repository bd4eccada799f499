"""ModelRegistry: versions on disk, activation, and crash safety under SIGKILL."""

from __future__ import annotations

import inspect
import json
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from neuralfolio.errors import ConfigError, ModelError
from neuralfolio.features import FeatureSpec
from neuralfolio.serve.registry import ModelRecord, ModelRegistry

HISTORY = np.linspace(1.0, 2.0, 12).reshape(3, 4)


def make_runtime(seed, hidden=8, depth=2):
    """A dense softmax network over 4 assets' prices (no training); also run by the
    subprocesses of the kill tests, so it imports what it needs."""
    import itertools

    import numpy as np

    from neuralfolio.features import FeatureSpec
    from neuralfolio.scratch.runtime import NumpyAllocator

    rng = np.random.default_rng(seed)
    sizes = [4] + [hidden] * (depth - 1) + [4]
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        params[f"layer{i}.weight"] = rng.normal(size=(a, b)) / np.sqrt(a)
        params[f"layer{i}.bias"] = rng.normal(size=b) * 0.1
    arch = {"activations": ["relu"] * (depth - 1) + ["softmax"], "prior": 0,
            "prior_scale": 1.0}
    head = {"name": "softmax", "temperature": 1.0, "cash": False}
    return NumpyAllocator("dense", FeatureSpec("prices", 1), params, arch, head,
                          ["A", "B", "C", "D"])


def test_make_runtime_predicts():
    rt = make_runtime(0)
    assert isinstance(rt.features, FeatureSpec) and rt.lookback == 1
    w = rt.predict_latest(np.ones((rt.lookback, 4)))
    assert w.shape == (4,) and np.isclose(w.sum(), 1.0)


@pytest.fixture
def reg(tmp_path):
    return ModelRegistry(tmp_path / "reg")


# ---------------------------------------------------------------------------- basics
def test_constructor_creates_layout(tmp_path):
    root = tmp_path / "a" / "b"
    r = ModelRegistry(root)
    assert (root / "models").is_dir()
    assert r.list() == [] and r.active() is None


def test_register_list_get_load_round_trip(reg):
    r1, r2 = make_runtime(1), make_runtime(2)
    a = reg.register(r1, "dense", {"score": 0.5})
    b = reg.register(r2, "dense")
    assert (a.version, b.version) == (1, 2)
    assert (a.label, b.label) == ("dense:1", "dense:2")
    assert {p.name for p in b.path.iterdir()} == {"runtime.safetensors", "runtime.json",
                                                  "meta.json"}
    assert b.path == reg.root / "models" / "dense" / "v2"
    assert [r.label for r in reg.list()] == ["dense:1", "dense:2"]
    assert reg.get("dense").version == 2
    got = reg.get("dense", 1)
    assert got.meta["score"] == 0.5
    assert got.meta["kind"] == "dense" and got.meta["assets"] == ["A", "B", "C", "D"]
    assert got.meta["lookback"] == 1 and got.meta["created"].endswith("+00:00")
    assert json.loads((got.path / "meta.json").read_text()) == got.meta
    for rec, rt in ((got, r1), (reg.get("dense", 2), r2)):
        loaded = reg.load(rec)
        np.testing.assert_array_equal(loaded.predict_latest(HISTORY), rt.predict_latest(HISTORY))
    assert not np.allclose(r1.predict_latest(HISTORY), r2.predict_latest(HISTORY))


def test_list_sorted_and_filtered(reg):
    for name in ("zeta", "alpha", "zeta", "alpha", "alpha"):
        reg.register(make_runtime(0), name)
    assert [r.label for r in reg.list()] == ["alpha:1", "alpha:2", "alpha:3", "zeta:1",
                                             "zeta:2"]
    assert [r.version for r in reg.list("zeta")] == [1, 2]
    assert reg.list("nothing") == []
    assert isinstance(reg.list()[0], ModelRecord)


def test_next_version_is_max_plus_one(reg):
    reg.register(make_runtime(0), "m")
    reg.register(make_runtime(0), "m")
    import shutil

    shutil.rmtree(reg.get("m", 1).path)
    assert reg.register(make_runtime(0), "m").version == 3
    assert [r.version for r in reg.list("m")] == [2, 3]


def test_concurrent_registrations_get_distinct_versions(reg):
    def work():
        for _ in range(3):
            reg.register(make_runtime(0), "m")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.version for r in reg.list("m")] == list(range(1, 13))
    assert not list((reg.root / "models" / "m").glob(".tmp-*"))


def test_unknown_name_and_version(reg):
    with pytest.raises(ModelError, match="empty"):
        reg.get("dense")
    reg.register(make_runtime(0), "dense")
    reg.register(make_runtime(0), "dense")
    reg.register(make_runtime(0), "other")
    with pytest.raises(ModelError, match=r"no model named 'nope'.*dense \(versions 1, 2\)"):
        reg.get("nope")
    with pytest.raises(ModelError, match=r"no version 7; its versions are 1, 2"):
        reg.get("dense", 7)
    with pytest.raises(ModelError, match="no version"):
        reg.activate("dense", 3)
    with pytest.raises(ModelError, match="no model named"):
        reg.activate("nope")


@pytest.mark.parametrize("name", ["", "a/b", "..", ".", "a b", "mödel", "x\\y", None])
def test_bad_names(reg, name):
    with pytest.raises(ConfigError, match="invalid model name"):
        reg.register(make_runtime(0), name)
    with pytest.raises(ConfigError, match="invalid model name"):
        reg.get(name)


def test_bad_meta(reg):
    with pytest.raises(ConfigError, match="reserved"):
        reg.register(make_runtime(0), "m", {"kind": "x"})
    with pytest.raises(ConfigError, match="JSON"):
        reg.register(make_runtime(0), "m", {"x": object()})
    with pytest.raises(ConfigError, match="to_numpy_runtime"):
        reg.register(object(), "m")
    assert reg.list() == []
    assert not list((reg.root / "models").glob("*/.tmp-*"))


# ------------------------------------------------------------------------ activation
def test_activate_and_active(reg):
    reg.register(make_runtime(1), "m")
    reg.register(make_runtime(2), "m")
    assert reg.active() is None
    rec = reg.activate("m", 1)
    assert rec.label == "m:1" and reg.active().label == "m:1"
    state = json.loads((reg.root / "active.json").read_text())
    assert state["name"] == "m" and state["version"] == 1 and "activated" in state
    assert reg.activate("m").label == "m:2"
    assert reg.active().label == "m:2"
    with pytest.raises(ModelError):
        reg.activate("m", 9)
    assert reg.active().label == "m:2"          # a failed activation changes nothing
    assert ModelRegistry(reg.root).active().label == "m:2"
    assert not list(reg.root.glob("active.json.tmp-*"))


def test_activate_refuses_a_version_that_does_not_load(reg):
    reg.register(make_runtime(1), "m")
    bad = reg.register(make_runtime(2), "m")
    reg.activate("m", 1)
    (bad.path / "runtime.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="does not load"):
        reg.activate("m", 2)
    (bad.path / "runtime.json").unlink()
    with pytest.raises(ModelError, match="no version 2"):   # incomplete: not a version
        reg.activate("m", 2)
    assert reg.active().label == "m:1"


def test_active_pointing_to_missing_version(reg):
    import shutil

    reg.register(make_runtime(1), "m")
    rec = reg.register(make_runtime(2), "m")
    reg.activate("m", 2)
    shutil.rmtree(rec.path)
    with pytest.raises(ModelError, match=r"m:2.*missing.*activate another version"):
        reg.active()
    assert reg.activate("m", 1).label == "m:1"
    assert reg.active().label == "m:1"


def test_temp_entries_ignored_and_cleaned(tmp_path):
    reg = ModelRegistry(tmp_path)
    reg.register(make_runtime(1), "m")
    reg.activate("m", 1)
    partial = tmp_path / "models" / "m" / ".tmp-0123abcd"
    partial.mkdir()
    (partial / "runtime.safetensors").write_bytes(b"half a fi")
    other = tmp_path / "models" / "new" / ".tmp-feed"
    other.mkdir(parents=True)
    empty_version = tmp_path / "models" / "m" / "v5"     # a hand-made, incomplete dir
    empty_version.mkdir()
    stray = tmp_path / "active.json.tmp-deadbeef"
    stray.write_text('{"name": "m", "vers')
    assert [r.label for r in reg.list()] == ["m:1"]
    assert reg.get("m").version == 1
    assert reg.active().label == "m:1"
    with pytest.raises(ModelError):
        reg.get("new")
    # A fresh registry leaves young temporary entries alone (another process may own them)...
    ModelRegistry(tmp_path)
    assert partial.exists() and stray.exists()
    # ... and removes stale ones.
    old = time.time() - 3600
    for p in (partial, partial / "runtime.safetensors"):
        os.utime(p, (old, old))
    ModelRegistry(tmp_path)
    assert not partial.exists() and other.exists()
    removed = reg.cleanup()
    assert set(removed) == {other, stray}
    assert not other.exists() and not stray.exists()
    assert reg.register(make_runtime(0), "m").version == 6   # past the hand-made v5
    assert [r.label for r in reg.list()] == ["m:1", "m:6"]


def test_stale_after_zero_cleans_on_construction(tmp_path):
    ModelRegistry(tmp_path)
    stray = tmp_path / "active.json.tmp-x"
    stray.write_text("{")
    ModelRegistry(tmp_path, stale_after=0)
    assert not stray.exists()


# ------------------------------------------------------------------------ SIGKILL
SCRIPT = """
import sys

{make_runtime}

from neuralfolio.serve.registry import ModelRegistry

root, mode = sys.argv[1], sys.argv[2]
reg = ModelRegistry(root)
if mode == "activate":
    reg.register(make_runtime(1), "m")
    reg.register(make_runtime(2), "m")
    print("ready", flush=True)
    i = 0
    while True:
        reg.activate("m", 1 + i % 2)
        i += 1
        if i % 25 == 0:
            print(i, flush=True)
else:
    reg.register(make_runtime(1), "big")
    big = make_runtime(3, hidden=2000, depth=3)
    print("ready", flush=True)
    i = 0
    while True:
        reg.register(big, "big")
        i += 1
        print(i, flush=True)
"""


class Child:
    """A script run in a subprocess, its stdout lines read by a thread."""

    def __init__(self, script: Path, root: Path, mode: str) -> None:
        self.err = script.with_suffix(f".{mode}.err")
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), str(root), mode], stdout=subprocess.PIPE,
                stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.decode().strip())

    def wait_for(self, check, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.kill()
                pytest.fail(f"child gave no expected line in {timeout} s; stderr:\n"
                            f"{self.err.read_text()}")
            if check(line):
                return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "child.py"
    path.write_text(SCRIPT.format(make_runtime=textwrap.dedent(inspect.getsource(make_runtime))))
    return path


def test_sigkill_during_activation_leaves_a_complete_active_model(tmp_path, script):
    expected = {v: make_runtime(v).predict_latest(HISTORY) for v in (1, 2)}
    rnd = random.Random(7)
    seen = set()
    for run in range(5):
        root = tmp_path / f"run{run}"
        child = Child(script, root, "activate")
        child.wait_for(lambda s: s == "ready")
        target = rnd.randrange(200, 500)
        child.wait_for(lambda s, t=target: s.isdigit() and int(s) >= t)
        time.sleep(rnd.uniform(0.0, 0.005))
        child.kill()
        assert child.proc.returncode == -signal.SIGKILL, child.err.read_text()

        reg = ModelRegistry(root)
        rec = reg.active()
        assert rec is not None and rec.name == "m" and rec.version in (1, 2)
        seen.add(rec.version)
        runtime = reg.load(rec)
        np.testing.assert_array_equal(runtime.predict_latest(HISTORY), expected[rec.version])
        json.loads((root / "active.json").read_text())
        assert [r.label for r in reg.list()] == ["m:1", "m:2"]
        reg.cleanup()
        assert not list(root.glob("active.json.tmp-*"))
        assert reg.active().label == rec.label


def test_sigkill_during_register_leaves_only_complete_versions(tmp_path, script):
    small = make_runtime(1).predict_latest(HISTORY)
    big = make_runtime(3, hidden=2000, depth=3).predict_latest(HISTORY)
    rnd = random.Random(11)
    for run in range(3):
        root = tmp_path / f"big{run}"
        child = Child(script, root, "register")
        child.wait_for(lambda s: s == "ready")
        if run == 0:
            # Kill as soon as a version is being written.
            deadline = time.monotonic() + 60
            while not list(root.glob("models/big/.tmp-*/runtime.safetensors")):
                assert time.monotonic() < deadline, child.err.read_text()
                time.sleep(0.0005)
        else:
            child.wait_for(lambda s: s == "1")
            time.sleep(rnd.uniform(0.0, 0.3))
        child.kill()

        reg = ModelRegistry(root)
        records = reg.list()
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        for rec in records:
            out = reg.load(rec).predict_latest(HISTORY)
            np.testing.assert_allclose(out, small if rec.version == 1 else big, rtol=0,
                                       atol=1e-12)
        leftovers = list(root.glob("models/big/.tmp-*"))
        if run == 0:
            assert len(records) == 1 and len(leftovers) == 1
        removed = reg.cleanup()
        assert set(removed) == set(leftovers)
        assert reg.list() == records
        nxt = reg.register(make_runtime(0), "big")
        assert nxt.version == len(records) + 1


# ------------------------------------------------------------------ rule versions
def test_rule_versions_register_list_and_load_as_policies(tmp_path):
    from neuralfolio.policies import EqualWeight, OptimizerPolicy, RuntimePolicy

    reg = ModelRegistry(tmp_path)
    r1 = reg.register_rule({"rule": "optimizer", "objective": "min_cvar", "window": 60}, "opt",
                           meta={"note": "exact fallback"})
    r2 = reg.register_rule({"rule": "equal_weight"}, "ew")
    assert (r1.label, r2.label) == ("opt:1", "ew:1") and r1.is_rule
    assert r1.meta["kind"] == "rule" and r1.meta["objective"] == "min_cvar"
    assert r1.meta["window"] == 60 and r1.meta["lookback"] == 61
    assert [r.label for r in reg.list()] == ["ew:1", "opt:1"]
    policy = reg.load_policy(reg.get("opt"))
    assert isinstance(policy, OptimizerPolicy) and policy.objective == "min_cvar"
    assert isinstance(reg.load_policy(reg.get("ew")), EqualWeight)
    assert reg.activate("ew").label == "ew:1" and reg.active().label == "ew:1"
    with pytest.raises(ModelError, match="rule version"):
        reg.load(reg.get("ew"))
    net = reg.register(make_runtime(0), "net")
    assert isinstance(reg.load_policy(net), RuntimePolicy) and not net.is_rule


@pytest.mark.parametrize("rule, match", [
    ({"rule": "hrp"}, "one of"),
    ("equal_weight", "one of"),
    ({"rule": "equal_weight", "window": 5}, "unknown"),
    ({"rule": "inverse_volatility", "window": 1}, "window must be"),
    ({"rule": "optimizer", "objective": "max_fun"}, "Unknown objective"),
])
def test_bad_rules_are_refused_before_anything_is_written(tmp_path, rule, match):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(ConfigError, match=match):
        reg.register_rule(rule, "r")
    assert reg.list() == []


def test_a_damaged_rule_version_names_the_fix(tmp_path):
    reg = ModelRegistry(tmp_path)
    record = reg.register_rule({"rule": "equal_weight"}, "ew")
    (record.path / "rule.json").write_text("{not json")
    with pytest.raises(ModelError, match="register the rule again"):
        reg.activate("ew")
