"""Load test of the weights service over loopback, with hot model swaps during the load.

What it does, start to finish (it stops by itself and cleans up after itself):

1. trains two versions of a small dense network (hidden 64-64, simplex head, 5 epochs,
   seeds 0 and 1) to imitate the daily minimum-variance weights of the bundled sp500 data
   (20 assets, risk inputs over 126-day windows, 2000 dates ending 2015), registers them in
   a temporary registry as ``minvar:1`` and ``minvar:2`` and activates ``minvar:1``;
2. starts ``neuralfolio serve`` on that registry as a separate process on a free port of
   127.0.0.1 and waits for ``/readyz``;
3. creates ``--portfolios`` portfolios, each with the price rows a decision needs before its
   own first tick (the portfolios start a month apart from 2016 on, after the training data);
4. ``--clients`` threads, each with its own keep-alive ``httpx.Client``, send requests until
   ``--requests`` were sent or ``--seconds`` went by: 9 in 10 are ticks (a portfolio's next
   real sp500 row, timestamps increasing; a portfolio that reaches the end of the data goes
   on with the same daily returns from its first tick, chained onto its last price and
   shifted in time) and 1 in 10 is a stateless ``POST /v1/weights`` with a full window;
5. meanwhile a swapper thread activates ``minvar:2``, ``minvar:1``, ``minvar:2``, ...
   ``--swaps`` times through the admin route, spread evenly over the run (paced by requests
   done or time elapsed, whichever is ahead, so that the swaps are over before the load);
6. stops the service (SIGTERM, then SIGKILL; the service flushes its audit log on the way
   out), counts the rows of its audit log (``<registry>/audit.db``) and deletes the registry.

Measured: throughput (requests answered per second of load), client-side latency per
request (send to parsed answer, in milliseconds), the server's own decision time (the
answer's ``latency_us``), failures (any answer other than 200, any exception, or an answer
from a model that is neither registered version nor the optimizer fallback, a swap not
done, an audit log that does not hold every answered decision), swaps done, fallback
answers, and how many answers each model gave. The exit status is 1 when anything failed.

Two load generators (``--generator``):

``python`` (the default)
    ``--clients`` Python threads as in step 4. Client and service share the machine: the
    numbers include the clients' own CPU time (Python's GIL keeps the clients on about one
    core) and are a lower bound of what the service does alone.
``wrk``
    Debian's ``wrk`` (``apt-get install wrk``), a C load generator with a Lua script that
    this script writes: ``--wrk-threads`` threads hold ``--connections`` keep-alive
    connections for ``--seconds`` (``--requests`` does not apply) and ``max(--portfolios,
    --connections)`` portfolios are created. Each wrk thread owns its share of the
    portfolios and sends a tick only for a portfolio with no tick in flight (the answer
    names its portfolio, which then is free again), so every portfolio's ticks arrive in
    time order and are accepted; 1 request in 10 (and any request when none of the
    thread's portfolios is free) is a stateless ``POST /v1/weights``. The script checks
    every answer (status, model, weights summing to 1) and collects the server's
    ``latency_us``; wrk's ``--latency`` distribution gives the client-side percentiles and
    its "Non-2xx" and "Socket errors" lines the failures.

Run: ``python benchmarks/serve_load.py --requests 20000 --seconds 60 [--json]`` or
``python benchmarks/serve_load.py --generator wrk --seconds 30 --connections 16``
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import httpx
import numpy as np
import pandas as pd

NAME = "minvar"
WINDOW = 126
TRAIN_END = "2015-12-31"
TRAIN_DATES = 2000
STATELESS_EVERY = 10  # one request in ten is a stateless POST /v1/weights
STRIDE = 21  # trading days between the portfolios' first ticks
FALLBACK_LABEL = "optimizer(min_variance)"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- models, service
def build_registry(root: Path, prices: pd.DataFrame) -> list[str]:
    """Train and register two versions of a small network; activate the first.

    Parameters
    ----------
    root : Path
        Registry directory (created).
    prices : DataFrame
        The sp500 prices; the last ``TRAIN_DATES`` dates up to ``TRAIN_END`` are trained on.

    Returns
    -------
    list of str
        The registered versions' labels, ``["minvar:1", "minvar:2"]``.
    """
    from neuralfolio.features import FeatureSpec
    from neuralfolio.nn import NeuralAllocator, TrainConfig
    from neuralfolio.optimize import min_variance_labels
    from neuralfolio.serve import ModelRegistry
    from neuralfolio.serve.models import register_allocator

    torch_threads()
    registry = ModelRegistry(root)
    train = prices.loc[:TRAIN_END].iloc[-TRAIN_DATES:]
    labels = min_variance_labels(train, window=WINDOW).weights
    records = []
    for seed in (0, 1):
        config = TrainConfig(hidden=(64, 64), head="simplex", max_epochs=5, seed=seed)
        model = NeuralAllocator(FeatureSpec("risk", WINDOW), config).fit(train, labels)
        records.append(register_allocator(registry, model, NAME, train, window=WINDOW))
    registry.activate(NAME, 1)
    return [r.label for r in records]


def torch_threads() -> None:
    """One torch thread: the machine's cores are for the service and its clients."""
    import torch

    torch.set_num_threads(1)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(registry: Path, port: int, token: str, log: Path) -> subprocess.Popen:
    """``neuralfolio serve`` on ``registry`` as a child process, its output into ``log``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with open(log, "wb") as out:  # the child keeps its own handle
        return subprocess.Popen(
            [sys.executable, "-m", "neuralfolio.cli", "serve", "--registry", str(registry),
             "--host", "127.0.0.1", "--port", str(port), "--token", token],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Poll ``/readyz`` until it answers 200; raise if the process dies or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode}:\n"
                               + log.read_text(errors="replace")[-2000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the service was not ready after {timeout:g} s:\n"
                       + log.read_text(errors="replace")[-2000:])


def stop_service(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when the process has not exited after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


# ------------------------------------------------------------------------------- the feed
class TickFeed:
    """One portfolio's ticks: the real sp500 rows from its first tick on, in time order.

    Past the last row, the same daily returns start again from the first tick, chained onto
    the last price, with the dates shifted so that time keeps increasing.

    Parameters
    ----------
    values : ndarray, shape (n_dates, n_assets)
    dates : DatetimeIndex
    first : int
        Row of the first tick; the rows before it are the portfolio's history.
    """

    def __init__(self, values: np.ndarray, dates: pd.DatetimeIndex, first: int) -> None:
        self.values, self.dates, self.first = values, dates, first
        self.rows = len(values) - first  # ticks per lap
        self.growth = values[-1] / values[first - 1]  # price factor of one lap
        self.span = dates[-1] - dates[first - 1]  # time shift of one lap
        self.sent = 0

    def next_body(self) -> bytes:
        """The JSON body of the next tick."""
        lap, i = divmod(self.sent, self.rows)
        self.sent += 1
        row = self.values[self.first + i] * self.growth**lap
        stamp = self.dates[self.first + i] + lap * self.span
        return json.dumps({"timestamp": stamp.isoformat(), "prices": row.tolist()}).encode()


# ------------------------------------------------------------------------------- the load
@dataclass
class Tally:
    """What one client thread saw."""

    client_ms: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    models: collections.Counter = field(default_factory=collections.Counter)
    kinds: collections.Counter = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    fallbacks: int = 0

    def merge(self, other: Tally) -> None:
        self.client_ms += other.client_ms
        self.server_us += other.server_us
        self.statuses.update(other.statuses)
        self.models.update(other.models)
        self.kinds.update(other.kinds)
        self.failures += other.failures
        self.fallbacks += other.fallbacks


class Budget:
    """Hands out request numbers until ``requests`` were taken or ``seconds`` went by."""

    def __init__(self, requests: int, seconds: float) -> None:
        self.requests, self.seconds = requests, seconds
        self.taken = 0
        self.done = 0
        self.start = time.monotonic()
        self.over = threading.Event()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def take(self) -> int | None:
        with self._lock:
            if self.taken >= self.requests or self.elapsed() >= self.seconds:
                return None
            self.taken += 1
            return self.taken - 1

    def finish_one(self) -> None:
        with self._lock:
            self.done += 1


def check_answer(answer: dict[str, Any], labels: list[str], tally: Tally) -> str | None:
    """Count the answer's model; a description of what is wrong with it, or None."""
    model = answer.get("model")
    tally.models[model] += 1
    if "latency_us" in answer:
        tally.server_us.append(float(answer["latency_us"]))
    if answer.get("fallback"):
        tally.fallbacks += 1
        last_good = any(model == f"{label} (last good weights)" for label in labels)
        if model != FALLBACK_LABEL and not last_good:
            return f"unexpected fallback model {model!r}"
    elif model not in labels:
        return f"unexpected model {model!r}"
    weights = np.array(list(answer.get("weights", {}).values()), dtype=float)
    if weights.size == 0 or not np.isfinite(weights).all() or abs(weights.sum() - 1) > 1e-6:
        return f"weights from {model!r} do not sum to 1: {weights.sum():.6f}"
    return None


def client_loop(url: str, budget: Budget, feeds: dict[str, TickFeed], free: queue.Queue,
                windows: list[bytes], labels: list[str], tally: Tally) -> None:
    """Send requests until the budget is spent (one keep-alive connection)."""
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=30.0, headers=headers) as client:
        while (n := budget.take()) is not None:
            pid = None
            if n % STATELESS_EVERY == STATELESS_EVERY - 1:
                kind, path, body = "weights", "/v1/weights", windows[n % len(windows)]
            else:
                pid = free.get()  # a portfolio's ticks go one at a time, in order
                kind, path = "tick", f"/v1/portfolios/{pid}/ticks"
                body = feeds[pid].next_body()
            tally.kinds[kind] += 1
            t0 = time.perf_counter()
            try:
                r = client.post(path, content=body)
                answer = r.json() if r.status_code == 200 else None
            except (httpx.HTTPError, ValueError) as exc:
                tally.statuses["exception"] += 1
                tally.failures.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            finally:
                tally.client_ms.append((time.perf_counter() - t0) * 1e3)
                if pid is not None:
                    free.put(pid)
                budget.finish_one()
            tally.statuses[str(r.status_code)] += 1
            if answer is None:
                tally.failures.append(f"{kind}: {r.status_code} {r.text[:200]}")
                continue
            problem = check_answer(answer, labels, tally)
            if problem:
                tally.failures.append(f"{kind}: {problem}")


@dataclass
class SwapLog:
    """What the swapper did."""

    done: int = 0
    during_load: int = 0
    ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def swapper(url: str, token: str, swaps: int, budget: Budget, load_over: threading.Event,
            log: SwapLog) -> None:
    """Activate versions 2, 1, 2, ... ``swaps`` times, spread over the load.

    Swap ``k`` waits until ``k / (swaps + 1)`` of the requests were answered or of the time
    went by; once the load is over, the swaps left (if any) follow at once.
    """
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, timeout=30.0, headers=auth) as client:
        for k in range(1, swaps + 1):
            share = k / (swaps + 1)
            while not (budget.done >= share * budget.requests
                       or budget.elapsed() >= share * budget.seconds or load_over.is_set()):
                time.sleep(0.002)
            version = 2 if k % 2 else 1
            t0 = time.perf_counter()
            try:
                r = client.post(f"/v1/models/{NAME}/activate", json={"version": version})
            except httpx.HTTPError as exc:
                log.failures.append(f"swap {k}: {type(exc).__name__}: {exc}")
                continue
            log.ms.append((time.perf_counter() - t0) * 1e3)
            if r.status_code != 200 or r.json().get("active") != f"{NAME}:{version}":
                log.failures.append(f"swap {k}: {r.status_code} {r.text[:200]}")
                continue
            log.done += 1
            log.during_load += not load_over.is_set()


def setup_portfolios(url: str, prices: pd.DataFrame, count: int, start: str
                     ) -> dict[str, TickFeed]:
    """Create ``count`` portfolios on the service, each ``STRIDE`` days after the previous."""
    info = httpx.get(f"{url}/v1/models", timeout=10).json()["active"]
    needed = int(info["history_needed"])
    values, dates = prices.to_numpy(), prices.index
    first = max(int(dates.searchsorted(pd.Timestamp(start))), needed)
    room = len(values) - first - 1
    feeds = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for k in range(count):
            row = first + (k * STRIDE) % room
            pid = f"load-{k}"
            r = client.post("/v1/portfolios", json={
                "id": pid, "assets": list(prices.columns),
                "prices": values[row - needed: row].tolist(),
                "timestamps": [d.isoformat() for d in dates[row - needed: row]]})
            if r.status_code != 201:
                raise RuntimeError(f"portfolio {pid} refused ({r.status_code}): {r.text}")
            feeds[pid] = TickFeed(values, dates, row)
    return feeds


def stateless_windows(prices: pd.DataFrame, needed: int, start: str, count: int = 32,
                      seed: int = 0) -> list[bytes]:
    """JSON bodies of ``POST /v1/weights``: full windows ending at random dates after start."""
    values, dates = prices.to_numpy(), prices.index
    first = max(int(dates.searchsorted(pd.Timestamp(start))), needed)
    ends = np.random.default_rng(seed).integers(first, len(values), count)
    return [json.dumps({"assets": list(prices.columns),
                        "prices": values[e + 1 - needed: e + 1].tolist()}).encode()
            for e in ends]


def run_load(url: str, token: str, prices: pd.DataFrame, labels: list[str],
             args: argparse.Namespace) -> dict[str, Any]:
    """Portfolios, clients and swapper against a running service; the summary."""
    feeds = setup_portfolios(url, prices, args.portfolios, args.start)
    needed = int(httpx.get(f"{url}/v1/models", timeout=10).json()["active"]["history_needed"])
    windows = stateless_windows(prices, needed, args.start)
    free: queue.Queue = queue.Queue()
    for pid in feeds:
        free.put(pid)
    budget = Budget(args.requests, args.seconds)
    load_over = threading.Event()
    swaps = SwapLog()
    tallies = [Tally() for _ in range(args.clients)]
    clients = [threading.Thread(target=client_loop, name=f"client-{i}",
                                args=(url, budget, feeds, free, windows, labels, tally))
               for i, tally in enumerate(tallies)]
    swap_thread = threading.Thread(target=swapper, name="swapper",
                                   args=(url, token, args.swaps, budget, load_over, swaps))
    budget.start = time.monotonic()
    for t in [*clients, swap_thread]:
        t.start()
    for t in clients:
        t.join()
    seconds = budget.elapsed()
    load_over.set()
    swap_thread.join(timeout=30.0 + args.swaps)  # any swaps left go at once
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return summarize(total, swaps, seconds, args.swaps)


# ------------------------------------------------------------------------------ wrk mode
WRK_SCRIPT = r"""-- Written by benchmarks/serve_load.py for one run of wrk; see its docstring.
local ROWS_FILE, WINDOWS_FILE, OUT = %(rows)s, %(windows)s, %(out)s
local NTHREADS, STATELESS_EVERY, FIRST_ROW = %(nthreads)d, %(every)d, %(lo)d
local FEEDS = %(feeds)s
local LABELS = %(labels)s
local HEADERS = {["Content-Type"] = "application/json"}

local created, handles = 0, {}

function setup(thread)
  thread:set("tid", created)
  created = created + 1
  table.insert(handles, thread)
end

function init(args)
  epoch, text, numbers, windows = {}, {}, {}, {}
  for line in io.lines(ROWS_FILE) do
    local t, prices = line:match("^(%%d+)\t(.*)$")
    table.insert(epoch, tonumber(t))
    table.insert(text, prices)
  end
  for line in io.lines(WINDOWS_FILE) do table.insert(windows, line) end
  free, feeds, n = {}, {}, 0
  for k, f in ipairs(FEEDS) do
    if (k - 1) %% NTHREADS == tid then
      feeds[f.pid] = {first = f.first, growth = f.growth, span = f.span, sent = 0}
      table.insert(free, f.pid)
    end
  end
  -- flat tables only: wrk's thread:get() cannot copy a table that holds tables
  counts = {ticks = 0, stateless = 0, answered = 0, fallbacks = 0}
  server_us, examples = {}, {}
  -- wrk calls the first thread's request() once right after init() to check the script,
  -- and drops that request: it must take no portfolio
  checking = tid == 0
end

local function count(key)
  counts[key] = (counts[key] or 0) + 1
end

local function row_numbers(at)
  local row = numbers[at]
  if row == nil then
    row = {}
    for x in text[at]:gmatch("[^,%%[%%]]+") do table.insert(row, tonumber(x)) end
    numbers[at] = row
  end
  return row
end

local function tick_body(f)
  local per_lap = #text - (f.first - FIRST_ROW)
  local lap, i = math.floor(f.sent / per_lap), f.sent %% per_lap
  f.sent = f.sent + 1
  local at = f.first - FIRST_ROW + i + 1
  local prices = text[at]
  if lap > 0 then  -- the same returns again, chained onto the last price
    local parts = {}
    for j, x in ipairs(row_numbers(at)) do
      parts[j] = string.format("%%.12g", x * f.growth[j] ^ lap)
    end
    prices = "[" .. table.concat(parts, ",") .. "]"
  end
  local stamp = os.date("!%%Y-%%m-%%dT%%H:%%M:%%S", epoch[at] + lap * f.span)
  return '{"timestamp":"' .. stamp .. '","prices":' .. prices .. '}'
end

function request()
  if free == nil or checking then  -- wrk's own check of the script
    checking = false
    return wrk.format("GET", "/healthz")
  end
  n = n + 1
  local pid = nil
  if n %% STATELESS_EVERY ~= 0 then pid = table.remove(free) end
  if pid == nil then
    count("stateless")
    return wrk.format("POST", "/v1/weights", HEADERS, windows[n %% #windows + 1])
  end
  count("ticks")
  return wrk.format("POST", "/v1/portfolios/" .. pid .. "/ticks", HEADERS,
                    tick_body(feeds[pid]))
end

local function problem(what)
  if #examples < 5 then table.insert(examples, what) end
end

function response(status, headers, body)
  if body == '{"status":"ok"}' then return end  -- a check request that was sent after all
  count("status " .. status)
  if status ~= 200 then
    problem(status .. " " .. body:sub(1, 200))
    return
  end
  count("answered")
  local pid = body:match('"portfolio":"([^"]+)"')
  if pid ~= nil and feeds[pid] ~= nil then table.insert(free, pid) end
  local model = body:match('"model":"([^"]*)"') or "?"
  count("model " .. model)
  if body:find('"fallback":true', 1, true) then
    count("fallbacks")
    if not (model == LABELS.fallback or LABELS[model:match("^(.-) %%(last good weights%%)$")
                                                or ""]) then
      problem("unexpected fallback model " .. model)
    end
  elseif not LABELS[model] then
    problem("unexpected model " .. model)
  end
  local sum, count = 0, 0
  for x in (body:match('"weights":{(.-)}') or ""):gmatch(':([-+%%d%%.eE]+)') do
    sum, count = sum + tonumber(x), count + 1
  end
  if count == 0 or math.abs(sum - 1) > 1e-6 then
    problem(string.format("weights from %%s sum to %%.6f", model, sum))
  end
  local us = body:match('"latency_us":([-+%%d%%.eE]+)')
  if us ~= nil then table.insert(server_us, tonumber(us)) end
end

local function encode(v)
  local kind = type(v)
  if kind == "table" then
    local parts = {}
    if #v > 0 then
      for i = 1, #v do parts[i] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for k, x in pairs(v) do table.insert(parts, encode(tostring(k)) .. ":" .. encode(x)) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "string" then
    return '"' .. v:gsub('[%%c"\\]', function(c)
      return string.format("\\u%%04x", c:byte()) end) .. '"'
  elseif kind == "number" then
    return string.format("%%.17g", v)
  end
  return tostring(v)
end

function done(summary, latency, requests)
  local threads = {}
  for _, t in ipairs(handles) do
    table.insert(threads, {counts = t:get("counts"), server_us = t:get("server_us"),
                           examples = t:get("examples")})
  end
  local e = summary.errors
  local out = {requests = summary.requests, duration_us = summary.duration,
               errors = {connect = e.connect, read = e.read, write = e.write,
                         status = e.status, timeout = e.timeout},
               p50_us = latency:percentile(50), p99_us = latency:percentile(99),
               p999_us = latency:percentile(99.9), max_us = latency.max, threads = threads}
  local f = assert(io.open(OUT, "w"))
  f:write(encode(out))
  f:close()
end
"""


def _lua(value: Any) -> str:
    """A Lua literal of a JSON-like value (str, int, float, list, dict with str keys)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # ASCII with escapes: also a valid Lua string
    return repr(value)


def write_wrk_script(folder: Path, feeds: dict[str, TickFeed], windows: list[bytes],
                     labels: list[str], threads: int) -> tuple[Path, Path]:
    """Write the wrk script and its data into ``folder``.

    Parameters
    ----------
    folder : Path
    feeds : dict
        Portfolio id -> its :class:`TickFeed` (all on the same price rows).
    windows : list of bytes
        Bodies of the stateless requests.
    labels : list of str
        The registered versions' labels (the answers' expected models).
    threads : int
        wrk's ``--threads``: the portfolios are dealt out to the threads.

    Returns
    -------
    script, out : Path
        The Lua script to pass to ``wrk -s``, and the JSON file its ``done()`` writes.
    """
    some = next(iter(feeds.values()))
    values, dates = some.values, some.dates
    lo = min(f.first for f in feeds.values())
    seconds = np.asarray((dates - pd.Timestamp(0)) // pd.Timedelta(seconds=1), dtype=np.int64)
    rows = folder / "rows.tsv"
    with open(rows, "w") as out:  # one row a line: epoch seconds, then the prices as JSON
        for i in range(lo, len(values)):
            out.write(f"{seconds[i]}\t{json.dumps(values[i].tolist(), separators=(',', ':'))}\n")
    bodies = folder / "windows.jsonl"
    bodies.write_bytes(b"".join(w + b"\n" for w in windows))  # no newline in JSON
    feed_list = [{"pid": pid, "first": f.first, "growth": f.growth.tolist(),
                  "span": int(f.span / pd.Timedelta(seconds=1))} for pid, f in feeds.items()]
    result = folder / "wrk-result.json"
    script = folder / "load.lua"
    script.write_text(WRK_SCRIPT % {
        "rows": _lua(str(rows)), "windows": _lua(str(bodies)), "out": _lua(str(result)),
        "nthreads": threads, "every": STATELESS_EVERY, "lo": lo, "feeds": _lua(feed_list),
        "labels": _lua({**dict.fromkeys(labels, True), "fallback": FALLBACK_LABEL})})
    return script, result


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def _ms(text: str) -> float:
    """wrk's time (``"812.00us"``, ``"3.21ms"``, ``"1.02s"``) in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """The numbers of wrk's report (run with ``--latency``).

    Returns
    -------
    dict
        ``requests``, ``seconds``, ``rps``, ``latency_ms`` (percentile -> ms, from the
        "Latency Distribution"), ``non_2xx`` and ``socket_errors`` (connect, read, write,
        timeout).
    """
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", text)
    if total is None:
        raise RuntimeError(f"no summary in wrk's output:\n{text[-2000:]}")
    dist = text.split("Latency Distribution", 1)[-1]
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "requests": int(total.group(1)),
        "seconds": _ms(total.group(2) + total.group(3)) / 1e3,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "latency_ms": {int(p): _ms(v) for p, v in
                       re.findall(r"^\s+(\d+)%\s+([\d.]+[a-z]+)\s*$", dist, re.M)},
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"),
                                  map(int, socket_errors.groups()), strict=True))
        if socket_errors else dict.fromkeys(("connect", "read", "write", "timeout"), 0),
    }


def run_wrk(url: str, token: str, prices: pd.DataFrame, labels: list[str],
            args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Portfolios, wrk and the swapper against a running service; the summary.

    Parameters
    ----------
    url, token : str
        The service and its admin token.
    prices : DataFrame
    labels : list of str
        The registered versions.
    args : Namespace
        The command line (``seconds``, ``connections``, ``wrk_threads``, ``portfolios``,
        ``swaps``, ``start``).
    folder : Path
        Where the Lua script, its data and wrk's result go.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not on PATH; install it (apt-get install wrk) or run "
                           "with --generator python.")
    feeds = setup_portfolios(url, prices, max(args.portfolios, args.connections), args.start)
    needed = int(httpx.get(f"{url}/v1/models", timeout=10).json()["active"]["history_needed"])
    windows = stateless_windows(prices, needed, args.start)
    script, out = write_wrk_script(folder, feeds, windows, labels, args.wrk_threads)
    budget = Budget(sys.maxsize, args.seconds)  # the swaps are paced by time alone
    load_over = threading.Event()
    swaps = SwapLog()
    swap_thread = threading.Thread(target=swapper, name="swapper",
                                   args=(url, token, args.swaps, budget, load_over, swaps))
    command = [wrk, "--threads", str(args.wrk_threads), "--connections",
               str(args.connections), "--duration", f"{args.seconds:g}s", "--timeout", "10s",
               "--latency", "--script", str(script), url]
    _log("wrk command: " + " ".join(command))
    budget.start = time.monotonic()
    swap_thread.start()
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=args.seconds + 120)
    finally:
        load_over.set()
        swap_thread.join(timeout=30.0 + args.swaps)
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    report = parse_wrk(done.stdout)
    detail = json.loads(out.read_text())
    threads = detail["threads"]
    statuses: collections.Counter = collections.Counter()
    models: collections.Counter = collections.Counter()
    totals: collections.Counter = collections.Counter()
    server_us: list[float] = []
    examples: list[str] = []
    for t in threads:  # (an empty Lua table reads as [] in its JSON)
        for key, n in t["counts"].items():
            kind, _, name = key.partition(" ")
            {"status": statuses, "model": models}.get(kind, totals)[name or kind] += n
        server_us += t["server_us"] or []
        examples += t["examples"] or []
    errors = report["socket_errors"]
    failures = examples + swaps.failures
    failures += [f"{report['non_2xx']} non-2xx answers"] if report["non_2xx"] else []
    failures += [f"socket errors {errors}"] if any(errors.values()) else []
    failures += [f"{args.swaps - swaps.done} swaps not done"] if swaps.done < args.swaps else []
    server = np.array(server_us) if server_us else np.array([np.nan])
    return {
        "generator": "wrk",
        "command": " ".join(command),
        "requests": report["requests"],
        "answered": statuses["200"],
        "sent": totals["ticks"] + totals["stateless"],
        "ticks": totals["ticks"],
        "stateless": totals["stateless"],
        "seconds": round(report["seconds"], 3),
        "throughput_rps": report["rps"],
        "client_p50_ms": report["latency_ms"].get(50),
        "client_p99_ms": report["latency_ms"].get(99),
        "client_p999_ms": round(detail["p999_us"] / 1e3, 3),
        "server_p50_us": round(float(np.percentile(server, 50)), 1),
        "server_p99_us": round(float(np.percentile(server, 99)), 1),
        "failures": len(failures),
        "failure_examples": failures[:5],
        "failure_list": failures,
        "statuses": dict(statuses),
        "non_2xx": report["non_2xx"],
        "socket_errors": errors,
        "swaps_done": swaps.done,
        "swaps_wanted": args.swaps,
        "swaps_during_load": swaps.during_load,
        "swap_p50_ms": round(float(np.median(swaps.ms)), 2) if swaps.ms else None,
        "fallbacks": totals["fallbacks"],
        "models_seen": dict(sorted(models.items())),
    }


def audit_rows(registry: Path) -> int:
    """Decisions in the service's audit log, ``<registry>/audit.db`` (read after it stopped)."""
    path = registry / "audit.db"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])


def check_audit(result: dict[str, Any], rows: int) -> None:
    """Record the audit count in ``result``; a failure unless every answered decision is
    in it.

    The log may hold a few more: wrk stops with requests in flight, which the service
    still decides (and logs) but wrk no longer counts; at most every request sent
    (``result["sent"]``) is logged.
    """
    result["audit_rows"] = rows
    if not result["answered"] <= rows <= result.get("sent", result["answered"]):
        problem = (f"the audit log holds {rows} decisions for {result['answered']} "
                   f"answered requests ({result.get('sent', result['answered'])} sent)")
        result["failure_list"].append(problem)
        result["failures"] = len(result["failure_list"])
        result["failure_examples"] = result["failure_list"][:5]


def summarize(total: Tally, swaps: SwapLog, seconds: float, wanted: int) -> dict[str, Any]:
    """The numbers that are printed."""
    client = np.array(total.client_ms) if total.client_ms else np.array([np.nan])
    server = np.array(total.server_us) if total.server_us else np.array([np.nan])
    requests = len(total.client_ms)
    failures = total.failures + swaps.failures + (
        [f"{wanted - swaps.done} swaps not done"] if swaps.done < wanted else [])
    return {
        "generator": "python",
        "requests": requests,
        "answered": total.statuses["200"],
        "ticks": total.kinds["tick"],
        "stateless": total.kinds["weights"],
        "seconds": round(seconds, 3),
        "throughput_rps": round(requests / seconds, 1) if seconds > 0 else None,
        "client_p50_ms": round(float(np.percentile(client, 50)), 3),
        "client_p99_ms": round(float(np.percentile(client, 99)), 3),
        "server_p50_us": round(float(np.percentile(server, 50)), 1),
        "server_p99_us": round(float(np.percentile(server, 99)), 1),
        "failures": len(failures),
        "failure_examples": failures[:5],
        "failure_list": failures,
        "statuses": dict(total.statuses),
        "swaps_done": swaps.done,
        "swaps_wanted": wanted,
        "swaps_during_load": swaps.during_load,
        "swap_p50_ms": round(float(np.median(swaps.ms)), 2) if swaps.ms else None,
        "fallbacks": total.fallbacks,
        "models_seen": dict(sorted(total.models.items())),
    }


def print_table(result: dict[str, Any]) -> None:
    """The summary as aligned lines."""
    models = ", ".join(f"{m} {n}" for m, n in result["models_seen"].items()) or "-"
    lines = [
        ("generator", result["generator"]),
        ("requests", f"{result['requests']} ({result['ticks']} ticks, "
                     f"{result['stateless']} stateless)"),
        ("seconds", f"{result['seconds']:.1f}"),
        ("throughput", f"{result['throughput_rps']:,.0f} req/s"),
        ("client p50 / p99", f"{result['client_p50_ms']:.2f} / {result['client_p99_ms']:.2f} "
                             "ms"),
        ("server decision p50 / p99", f"{result['server_p50_us']:,.0f} / "
                                      f"{result['server_p99_us']:,.0f} µs"),
        ("failures", str(result["failures"])
         + (f" (non-2xx {result['non_2xx']}, socket errors "
            f"{sum(result['socket_errors'].values())})" if "non_2xx" in result else "")),
        ("swaps done", f"{result['swaps_done']} / {result['swaps_wanted']} "
                       f"({result['swaps_during_load']} during the load; median "
                       f"{result['swap_p50_ms'] or 0:.1f} ms)"),
        ("audit rows / answered", f"{result.get('audit_rows', '-')} / {result['answered']}"
         + (f" ({result['sent']} sent; wrk stops with some in flight)"
            if "sent" in result else "")),
        ("fallbacks", str(result["fallbacks"])),
        ("models seen", models),
    ]
    for name, value in lines:
        print(f"{name:<28}{value}")
    for example in result["failure_examples"]:
        print(f"  failure: {example}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="most requests sent")
    parser.add_argument("--seconds", type=float, default=60.0, help="most seconds of load")
    parser.add_argument("--clients", type=int, default=8, help="client threads")
    parser.add_argument("--portfolios", type=int, default=8, help="portfolios ticked")
    parser.add_argument("--swaps", type=int, default=100, help="model activations")
    parser.add_argument("--start", default="2016-01-04", help="first tick date")
    parser.add_argument("--generator", choices=("python", "wrk"), default="python",
                        help="load generator: Python client threads, or wrk (see above)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk: keep-alive connections (one portfolio each)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk: its threads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if min(args.requests, args.clients, args.portfolios, args.connections,
           args.wrk_threads) < 1 or args.seconds <= 0:
        parser.error("--requests, --clients, --portfolios, --connections, --wrk-threads and "
                     "--seconds must be positive.")
    if args.wrk_threads > args.connections:
        parser.error("--wrk-threads must not exceed --connections.")
    if args.generator == "wrk" and shutil.which("wrk") is None:
        parser.error("--generator wrk: wrk is not on PATH (apt-get install wrk).")

    from neuralfolio.data import load_prices

    prices = load_prices("sp500")
    token = os.urandom(12).hex()
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        root = Path(tmp) / "registry"
        t0 = time.perf_counter()
        labels = build_registry(root, prices)
        _log(f"trained and registered {labels} in {time.perf_counter() - t0:.1f} s")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tmp) / "service.log"
        process = start_service(root, port, token, log)
        try:
            wait_ready(url, process, log)
            if args.generator == "wrk":
                _log(f"service ready at {url}; load: wrk for {args.seconds:g} s, "
                     f"{args.connections} connections, {args.wrk_threads} threads, "
                     f"{args.swaps} swaps")
                result = run_wrk(url, token, prices, labels, args, Path(tmp))
            else:
                _log(f"service ready at {url}; load: {args.requests} requests or "
                     f"{args.seconds:g} s, {args.clients} clients, {args.swaps} swaps")
                result = run_load(url, token, prices, labels, args)
        finally:
            stop_service(process)
        check_audit(result, audit_rows(root))  # the service flushed its log as it stopped
    del result["failure_list"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
