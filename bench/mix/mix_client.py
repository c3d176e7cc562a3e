#!/usr/bin/python3
"""Open-loop load client for bench/mix/run.sh: the real callers' request shapes at a fixed
arrival rate. Requests go out on schedule whether or not earlier ones have returned, and each
one's latency runs from the moment it was *scheduled*, so a stalled proxy cannot hide behind a
client that waits (no coordinated omission).

  mix_client.py run --target NAME --rule-engine URL --ai-gm URL --rate R --duration S
                    [--mix add=30,list=40,scenario=15,turn=10,riddle=5] [--think CLASS=MIN:MAX]...
                    [--riddle-interval-ms 50] [--riddle-chars 40] [--seed 1] [--warmup 1]
                    [--timeout 30] [--max-connections 4000] [--arrivals uniform|poisson]
                    --records FILE
      sends the mix, writes one line per request to FILE (TSV) and prints one SUMMARY line.
  mix_client.py report --records DIR/RATE --rate R [--bound-ms 50] [--results TSV]
      reads DIR/RATE-{direct,nginx,courier}.tsv, prints the per-class table (latency, the
      latency added over direct, errors, achieved rate), appends rows to TSV and prints one
      HELD line per proxy: whether it held the rate (see --bound-ms).
  mix_client.py selfcheck --demo PATH-TO-courier-demo-upstream
      starts two demo upstreams on loopback and checks, in seconds, that the client keeps to
      the requested rate and mix and classifies results (what the ctest runs).

Classes (the callers of issue 16; docs/performance.md, "Realistic mix"):
  add       POST rule-engine /session/add {"session_id","user_id"}
  list      GET  rule-engine /session/list?user_id=N&skip=0&limit=10&is_deleted=false
  scenario  POST rule-engine /play/scenario, 1-2 KB of UTF-8 JSON (Korean text, entities, relations)
  turn      POST ai-gm /api/v1/game/turn {"session_id","content"}
  riddle    GET  rule-engine /play/riddle/{id}: a stream; its latency is the time to first byte
The upstream is told how long to think per request (think_ms in the query, drawn from --think),
so "overhead" = latency - think is what the path added, request by request.

Standard library only; run it with Debian's /usr/bin/python3.
"""
import argparse
import asyncio
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

CLASSES = ("add", "list", "scenario", "turn", "riddle")
FAST = ("add", "list")
DEFAULT_MIX = "add=30,list=40,scenario=15,turn=10,riddle=5"
DEFAULT_THINK = {"add": (0, 0), "list": (0, 0), "scenario": (1000, 3000), "turn": (6000, 8000),
                 "riddle": (1000, 2000)}
OUTCOMES = ("ok", "http_4xx", "http_5xx", "truncated", "timeout", "connect", "closed",
            "client_limit")
RECORD_FIELDS = ("seq", "cls", "sched_s", "lag_ms", "outcome", "status", "latency_ms", "ttfb_ms",
                 "done_ms", "think_ms", "bytes")


# ---------------------------------------------------------------- request shapes
KOREAN = [
    "안개 낀 항구 도시에서 실종된 등대지기를 찾는 이야기",
    "플레이어는 오래된 지도를 들고 북쪽 성문을 지나야 한다",
    "상인 길드의 대표는 비밀스러운 거래를 제안한다",
    "폐허가 된 신전 아래에서 낯선 목소리가 들려온다",
    "마을 사람들은 밤마다 울리는 종소리를 두려워한다",
    "기사단의 부단장은 배신자를 찾기 위해 조사를 시작한다",
]
NAMES = ["이서연", "박도윤", "김하준", "최지우", "정민서", "한유진", "오세훈", "윤채원"]


def scenario_body(rng, size):
    """A /play/scenario body of about `size` bytes of UTF-8 (1-2 KB), shaped like the GM's."""
    doc = {"session_id": str(uuid.UUID(int=rng.getrandbits(128))),
           "scenario_id": f"scn-{rng.randrange(1000)}",
           "title": rng.choice(KOREAN), "description": "", "entities": [], "relations": []}
    while len(json.dumps(doc, ensure_ascii=False).encode()) < size - 160:
        name = rng.choice(NAMES)
        doc["entities"].append({"name": name, "type": rng.choice(["npc", "item", "place"]),
                                "description": rng.choice(KOREAN)})
        if len(doc["entities"]) > 1:
            doc["relations"].append({"from": doc["entities"][-2]["name"], "to": name,
                                     "type": rng.choice(["ally", "rival", "owns", "knows"])})
    text = json.dumps(doc, ensure_ascii=False).encode()
    pad = size - len(text)
    if pad > 0:  # top up with Korean text in the description (3 bytes per syllable)
        doc["description"] = ("이야기" * (pad // 9 + 1))[: max(pad // 3, 0)]
    return json.dumps(doc, ensure_ascii=False).encode()


def parse_mix(text):
    weights = {}
    for part in text.split(","):
        name, _, w = part.partition("=")
        if name not in CLASSES:
            raise SystemExit(f"mix: unknown class {name!r} (classes: {', '.join(CLASSES)})")
        weights[name] = float(w)
        if weights[name] < 0:
            raise SystemExit(f"mix: negative weight for {name}")
    if sum(weights.values()) <= 0:
        raise SystemExit("mix: all weights are zero")
    return weights


def parse_think(items):
    think = dict(DEFAULT_THINK)
    for item in items or []:
        name, _, span = item.partition("=")
        lo, _, hi = span.partition(":")
        if name not in CLASSES:
            raise SystemExit(f"think: unknown class {name!r}")
        lo, hi = int(lo), int(hi or lo)
        if not 0 <= lo <= hi <= 60000:
            raise SystemExit(f"think: {item}: want 0 <= MIN <= MAX <= 60000 ms")
        think[name] = (lo, hi)
    return think


def make_schedule(args):
    """Every request of the run, decided up front from the seed: the same sequence for every
    target, so direct, NGINX and Courier see identical traffic."""
    rng = random.Random(args.seed)
    weights = parse_mix(args.mix)
    think = parse_think(args.think)
    names = [c for c in CLASSES if weights.get(c, 0) > 0]
    cum, total = [], 0.0
    for c in names:
        total += weights[c]
        cum.append(total)
    bodies = [scenario_body(rng, rng.randrange(1024, 2049)) for _ in range(16)]
    n = int(round(args.rate * args.duration))
    t = 0.0
    schedule = []
    for i in range(n):
        if args.arrivals == "poisson":
            t += rng.expovariate(args.rate)
        else:
            t = i / args.rate
        x = rng.random() * total
        cls = names[next(k for k, v in enumerate(cum) if x < v)]
        lo, hi = think[cls]
        th = rng.randint(lo, hi)
        user = rng.randrange(1, 100000)
        q = f"think_ms={th}"
        if cls == "add":
            body = json.dumps({"session_id": str(uuid.UUID(int=rng.getrandbits(128))),
                               "user_id": user}).encode()
            req = ("rule-engine", "POST", f"/session/add?{q}", body)
        elif cls == "list":
            req = ("rule-engine", "GET",
                   f"/session/list?user_id={user}&skip=0&limit=10&is_deleted=false&{q}", None)
        elif cls == "scenario":
            req = ("rule-engine", "POST", f"/play/scenario?{q}", bodies[i % len(bodies)])
        elif cls == "turn":
            body = json.dumps({"session_id": str(uuid.UUID(int=rng.getrandbits(128))),
                               "content": "제단을 살펴본다 (I examine the altar)"},
                              ensure_ascii=False).encode()
            req = ("ai-gm", "POST", f"/api/v1/game/turn?{q}", body)
        else:
            req = ("rule-engine", "GET",
                   f"/play/riddle/{user}?{q}&interval_ms={args.riddle_interval_ms}"
                   f"&chars={args.riddle_chars}", None)
        schedule.append((t, cls, th, req))
    return schedule


# ---------------------------------------------------------------- HTTP/1.1 client
class Exchange:
    __slots__ = ("first_byte", "head_done", "status", "done", "bytes", "error", "keep_alive",
                 "future")

    def __init__(self, future):
        self.first_byte = self.head_done = self.done = None
        self.status = 0
        self.bytes = 0
        self.error = None
        self.keep_alive = True
        self.future = future


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time. Decodes Content-Length and chunked
    bodies incrementally; a close before the framing says "complete" is a truncation."""

    def __init__(self, pool):
        self.pool = pool
        self.transport = None
        self.exchange = None
        self.buf = bytearray()
        self.state = "idle"
        self.remaining = 0

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data, exchange):
        self.exchange = exchange
        self.state = "head"
        self.buf.clear()
        self.transport.write(data)

    def data_received(self, data):
        ex = self.exchange
        if ex is None:
            return  # unsolicited bytes: dropped; the connection is closed when reused
        if ex.first_byte is None:
            ex.first_byte = time.monotonic()
        self.buf += data
        try:
            self._decode(ex)
        except ValueError as e:
            self._finish(ex, error="truncated", detail=str(e))

    def _decode(self, ex):
        buf = self.buf
        while True:
            if self.state == "head":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        raise ValueError("head too large")
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[1].isdigit():
                    raise ValueError("bad status line")
                ex.status = int(parts[1])
                ex.head_done = time.monotonic()
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                ex.keep_alive = "close" not in headers.get("connection", "").lower()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.state = "size"
                elif "content-length" in headers:
                    self.remaining = int(headers["content-length"])
                    self.state = "length"
                else:
                    self.state = "close"
                    ex.keep_alive = False
            elif self.state == "length":
                take = min(self.remaining, len(buf))
                ex.bytes += take
                self.remaining -= take
                del buf[:take]
                if self.remaining == 0:
                    return self._finish(ex)
                return
            elif self.state == "size":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(buf[:end]).split(b";")[0], 16)
                del buf[: end + 2]
                if size == 0:
                    self.state = "trailer"
                else:
                    self.remaining = size
                    self.state = "data"
            elif self.state == "data":
                take = min(self.remaining, len(buf))
                ex.bytes += take
                self.remaining -= take
                del buf[:take]
                if self.remaining:
                    return
                self.state = "crlf"
            elif self.state == "crlf":
                if len(buf) < 2:
                    return
                del buf[:2]
                self.state = "size"
            elif self.state == "trailer":
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if not line:
                    return self._finish(ex)
            elif self.state == "close":
                ex.bytes += len(buf)
                buf.clear()
                return
            else:
                return

    def _finish(self, ex, error=None, detail=None):
        ex.done = time.monotonic()
        ex.error = error
        self.exchange = None
        self.state = "idle"
        reusable = error is None and ex.keep_alive and not self.buf
        if not ex.future.done():
            ex.future.set_result(None)
        if reusable:
            self.pool.release(self)
        else:
            self.pool.discard(self)

    def connection_lost(self, exc):
        ex = self.exchange
        self.pool.discard(self)
        if ex is None:
            return
        if self.state == "close":
            return self._finish(ex)
        self._finish(ex, error="closed" if ex.first_byte is None else "truncated")

    def abort(self):
        self.pool.discard(self)
        if self.transport is not None:
            self.transport.abort()


class Pool:
    """Idle keep-alive connections per host; a new one when none is idle, up to a shared cap."""

    def __init__(self, loop, limit):
        self.loop = loop
        self.limit = limit
        self.idle = {}    # (host, port) -> [Connection]
        self.key_of = {}  # Connection -> (host, port)
        self.opened = 0

    def release(self, conn):
        self.idle.setdefault(self.key_of[conn], []).append(conn)

    def discard(self, conn):
        key = self.key_of.pop(conn, None)
        if key is not None:
            lst = self.idle.get(key, [])
            if conn in lst:
                lst.remove(conn)
            if conn.transport is not None:
                conn.transport.close()

    async def get(self, host, port):
        lst = self.idle.get((host, port))
        while lst:
            conn = lst.pop()
            if not conn.transport.is_closing():
                return conn
            self.key_of.pop(conn, None)
        if len(self.key_of) >= self.limit:
            return None
        conn = Connection(self)
        self.key_of[conn] = (host, port)
        self.opened += 1
        try:
            await self.loop.create_connection(lambda: conn, host, port)
        except BaseException:  # refused, or cancelled by the request's deadline
            self.key_of.pop(conn, None)
            raise
        return conn


async def one_request(pool, base, item, start, timeout, rec):
    t_sched, cls, think, (service, method, path, body) = item
    host, port, prefix = base[service]
    now = time.monotonic()
    rec["lag_ms"] = (now - (start + t_sched)) * 1000
    sched = start + t_sched
    head = (f"{method} {prefix}{path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: courier-mix\r\n"
            f"Accept: {'text/event-stream' if cls == 'riddle' else 'application/json'}\r\n")
    if body is not None:
        head += f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
    data = head.encode() + b"\r\n" + (body or b"")
    loop = asyncio.get_running_loop()
    deadline = sched + timeout
    try:
        conn = await asyncio.wait_for(pool.get(host, port), max(deadline - time.monotonic(), 0.001))
    except asyncio.TimeoutError:
        rec["outcome"] = "timeout"
        return
    except OSError:
        rec["outcome"] = "connect"
        return
    if conn is None:
        rec["outcome"] = "client_limit"
        return
    ex = Exchange(loop.create_future())
    conn.send(data, ex)
    try:
        await asyncio.wait_for(ex.future, max(deadline - time.monotonic(), 0.001))
    except asyncio.TimeoutError:
        conn.abort()
        rec["outcome"] = "timeout"
        return
    rec["status"] = ex.status
    rec["bytes"] = ex.bytes
    if ex.first_byte is not None:
        rec["ttfb_ms"] = (ex.first_byte - sched) * 1000
    rec["done_ms"] = (ex.done - sched) * 1000
    if ex.error:
        rec["outcome"] = ex.error
    elif ex.status >= 500:
        rec["outcome"] = "http_5xx"
    elif ex.status >= 400 or ex.status < 200:
        rec["outcome"] = "http_4xx"
    else:
        rec["outcome"] = "ok"
    # A stream's latency is its first byte; anything else's is the whole response.
    rec["latency_ms"] = rec["ttfb_ms"] if cls == "riddle" else rec["done_ms"]


def base_urls(args):
    base = {}
    for service, url in (("rule-engine", args.rule_engine), ("ai-gm", args.ai_gm)):
        u = urlsplit(url)
        base[service] = (u.hostname, u.port or 80, u.path.rstrip("/"))
    return base


async def run_async(args, schedule):
    loop = asyncio.get_running_loop()
    pool = Pool(loop, args.max_connections)
    base = base_urls(args)
    records, tasks = [], []
    start = time.monotonic() + 0.05
    for seq, item in enumerate(schedule):
        rec = {"seq": seq, "cls": item[1], "sched_s": item[0], "lag_ms": 0.0, "outcome": "",
               "status": 0, "latency_ms": -1.0, "ttfb_ms": -1.0, "done_ms": -1.0,
               "think_ms": item[2], "bytes": 0}
        records.append(rec)
        delay = start + item[0] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one_request(pool, base, item, start, args.timeout, rec)))
    sent_end = time.monotonic()
    if tasks:
        await asyncio.wait(tasks)
    for conns in list(pool.idle.values()):
        for c in list(conns):
            pool.discard(c)
    return records, start, sent_end, time.monotonic(), pool.opened


def quantile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


def summarize(records, warmup):
    """Per class (and 'fast' = add + list): counts by outcome, latency and overhead quantiles."""
    out = {}
    # The counted window of arrivals, from the schedule: achieved rates are per second of it.
    window = max((r["sched_s"] for r in records), default=0) - warmup
    window = window if window > 0 else 1
    groups = {c: [r for r in records if r["cls"] == c] for c in CLASSES}
    groups["fast"] = groups["add"] + groups["list"]
    for name, rs in groups.items():
        if not rs:
            continue
        counted = [r for r in rs if r["sched_s"] >= warmup]
        ok = [r for r in counted if r["outcome"] == "ok"]
        lat = [r["latency_ms"] for r in ok]
        over = [r["latency_ms"] - r["think_ms"] for r in ok]
        s = {"n": len(counted), "ok": len(ok), "ok_rps": len(ok) / window,
             "p50": quantile(lat, 0.5), "p99": quantile(lat, 0.99), "max": max(lat or [math.nan]),
             "over_p50": quantile(over, 0.5), "over_p99": quantile(over, 0.99),
             "lag_p99": quantile([r["lag_ms"] for r in rs], 0.99)}
        for o in OUTCOMES[1:]:
            s[o] = sum(1 for r in counted if r["outcome"] == o)
        s["errors"] = len(counted) - len(ok)
        if name == "riddle":
            s["complete_p50"] = quantile([r["done_ms"] for r in ok], 0.5)
        out[name] = s
    return out


def cmd_run(args):
    schedule = make_schedule(args)
    records, start, sent_end, end, opened = asyncio.run(run_async(args, schedule))
    with open(args.records, "w") as f:
        f.write("\t".join(RECORD_FIELDS) + "\n")
        for r in records:
            f.write("\t".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                              for k in RECORD_FIELDS) + "\n")
    sent_span = sent_end - start
    lags = [r["lag_ms"] for r in records]
    s = summarize(records, args.warmup)
    errors = sum(v["errors"] for k, v in s.items() if k != "fast")
    print(f"SUMMARY target={args.target} rate={args.rate} requests={len(records)} "
          f"sent_rps={len(records) / sent_span if sent_span > 0 else 0:.1f} "
          f"lag_p50_ms={quantile(lags, 0.5):.2f} lag_p99_ms={quantile(lags, 0.99):.2f} "
          f"lag_max_ms={max(lags or [0]):.2f} errors={errors} connections={opened} "
          f"wall_s={end - start:.1f}", flush=True)
    return 0


# ---------------------------------------------------------------- report
def read_records(path):
    rows = []
    with open(path) as f:
        names = f.readline().rstrip("\n").split("\t")
        for line in f:
            d = dict(zip(names, line.rstrip("\n").split("\t")))
            for k in ("sched_s", "lag_ms", "latency_ms", "ttfb_ms", "done_ms"):
                d[k] = float(d[k])
            for k in ("seq", "status", "think_ms", "bytes"):
                d[k] = int(d[k])
            rows.append(d)
    return rows


def fmt(x, digits=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def cmd_report(args):
    targets = [t for t in ("direct", "nginx", "courier") if os.path.exists(f"{args.records}-{t}.tsv")]
    stats = {t: summarize(read_records(f"{args.records}-{t}.tsv"), args.warmup) for t in targets}
    header = ("rate", "target", "class", "n", "ok", "errors", "ok_rps", "p50_ms", "p99_ms",
              "max_ms", "overhead_p50_ms", "overhead_p99_ms", "added_p50_ms", "added_p99_ms",
              "lag_p99_ms", "load1", *OUTCOMES[1:])
    new = args.results and not os.path.exists(args.results)
    out = open(args.results, "a") if args.results else None
    if new:
        out.write("\t".join(header) + "\n")
    load = args.load or "-"
    print(f"  rate {args.rate:g} req/s  (ms from the scheduled send; riddle = time to first byte; "
          f"overhead = latency - upstream think; added = overhead - direct's)")
    print(f"  {'target':8} {'class':8} {'n':>6} {'err':>5} {'ok/s':>7} {'p50':>8} {'p99':>8} "
          f"{'ovh p50':>8} {'ovh p99':>8} {'+p50':>7} {'+p99':>7}  errors by kind")
    held = {}
    for t in targets:
        for cls in (*CLASSES, "fast"):
            s = stats[t].get(cls)
            if s is None:
                continue
            d = stats.get("direct", {}).get(cls)
            a50 = s["over_p50"] - d["over_p50"] if d and t != "direct" else float("nan")
            a99 = s["over_p99"] - d["over_p99"] if d and t != "direct" else float("nan")
            kinds = " ".join(f"{o}={s[o]}" for o in OUTCOMES[1:] if s[o])
            print(f"  {t:8} {cls:8} {s['n']:6d} {s['errors']:5d} {s['ok_rps']:7.1f} "
                  f"{fmt(s['p50']):>8} {fmt(s['p99']):>8} {fmt(s['over_p50']):>8} "
                  f"{fmt(s['over_p99']):>8} {fmt(a50):>7} {fmt(a99):>7}  {kinds}")
            if out:
                out.write("\t".join(str(x) for x in (
                    args.rate, t, cls, s["n"], s["ok"], s["errors"], fmt(s["ok_rps"]),
                    fmt(s["p50"], 2), fmt(s["p99"], 2), fmt(s["max"], 2), fmt(s["over_p50"], 2),
                    fmt(s["over_p99"], 2), fmt(a50, 2), fmt(a99, 2), fmt(s["lag_p99"], 2), load,
                    *(s[o] for o in OUTCOMES[1:]))) + "\n")
        total_err = sum(v["errors"] for k, v in stats[t].items() if k != "fast")
        fast = stats[t].get("fast")
        d = stats.get("direct", {}).get("fast")
        if t == "direct":
            ok = total_err == 0
            why = "no errors" if ok else f"{total_err} errors"
        elif fast and d:
            added = fast["over_p99"] - d["over_p99"]
            ok = total_err == 0 and added <= args.bound_ms
            why = (f"fast p99 added {added:.1f} ms {'<=' if added <= args.bound_ms else '>'} "
                   f"{args.bound_ms:g}, {total_err} errors")
        elif not fast:  # a mix without add or list: held means no errors
            ok = total_err == 0
            why = f"no fast class in the mix; {total_err} errors"
        else:
            ok, why = False, "no direct run to compare with"
        held[t] = ok
        print(f"HELD target={t} rate={args.rate:g} held={'yes' if ok else 'no'} ({why})")
    if out:
        out.close()
    return 0


# ---------------------------------------------------------------- self-check
def start_demo(binary, role):
    proc = subprocess.Popen([binary, "--role", role, "--listen", "127.0.0.1:0", "--threads", "1",
                             "--log-level", "info"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit(f"selfcheck: {role} demo upstream did not report its port")


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def cmd_selfcheck(args):
    import tempfile
    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            failures.append(what)

    re_proc, re_port = start_demo(args.demo, "rule-engine")
    gm_proc, gm_port = start_demo(args.demo, "ai-gm")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # 1. Everything answers: the schedule is kept, the mix honoured, each class right.
            rate, duration = 100.0, 3.0
            a = argparse.Namespace(
                target="direct", rule_engine=f"http://127.0.0.1:{re_port}",
                ai_gm=f"http://127.0.0.1:{gm_port}", rate=rate, duration=duration,
                mix="add=30,list=30,scenario=15,turn=15,riddle=10",
                think=["scenario=20:40", "turn=300:400", "riddle=100:100"],
                riddle_interval_ms=10, riddle_chars=5, seed=7, warmup=0.0, timeout=10.0,
                max_connections=500, arrivals="uniform", records=f"{tmp}/1-direct.tsv")
            t0 = time.monotonic()
            schedule = make_schedule(a)
            records, start, sent_end, end, opened = asyncio.run(run_async(a, schedule))
            check(len(records) == int(rate * duration), f"{len(records)} requests scheduled "
                  f"for {rate:g}/s x {duration:g} s")
            sent_rps = len(records) / (sent_end - start)
            check(abs(sent_rps - rate) / rate < 0.1, f"sent at {sent_rps:.1f}/s (asked {rate:g})")
            lags = sorted(r["lag_ms"] for r in records)
            check(quantile(lags, 0.99) < 50, f"send lag p99 {quantile(lags, 0.99):.1f} ms < 50")
            # Open loop: the 300-400 ms turns did not hold back what was scheduled after them.
            check(end - t0 < duration + 3, f"whole run {end - t0:.1f} s (sends {duration:g} s + "
                  "the last turn), not the sum of latencies")
            s = summarize(records, 0)
            for cls, w in (("add", .3), ("list", .3), ("scenario", .15), ("turn", .15),
                           ("riddle", .1)):
                share = s[cls]["n"] / len(records)
                check(abs(share - w) < 0.07, f"{cls}: share {share:.2f} (weight {w})")
                check(s[cls]["ok"] == s[cls]["n"], f"{cls}: {s[cls]['ok']}/{s[cls]['n']} ok")
            check(all(r["think_ms"] == 0 for r in records if r["cls"] in FAST), "fast: no think")
            check(s["turn"]["p50"] >= 300 and 0 <= s["turn"]["over_p50"] < 100,
                  f"turn: p50 {s['turn']['p50']:.0f} ms >= its think, overhead "
                  f"{s['turn']['over_p50']:.1f} ms")
            check(s["riddle"]["p50"] >= 100 and s["riddle"]["complete_p50"] >= 140,
                  f"riddle: first byte p50 {s['riddle']['p50']:.0f} ms after the 100 ms think, "
                  f"complete p50 {s['riddle']['complete_p50']:.0f} ms (5 chars 10 ms apart)")
            scen = [r for r in records if r["cls"] == "scenario"]
            check(all(r["bytes"] > 1024 for r in scen), "scenario: echoed 1-2 KB bodies back")
            check(opened < len(records) / 2, f"keep-alive: {opened} connections for "
                  f"{len(records)} requests")
            # 2. The GM unreachable: its requests are classified as connect errors, the rest ok;
            # an unknown route's 404 as http_4xx.
            a.ai_gm = f"http://127.0.0.1:{closed_port()}"
            a.rate, a.duration, a.mix = 50.0, 1.0, "add=50,turn=50"
            records, *_ = asyncio.run(run_async(a, make_schedule(a)))
            s = summarize(records, 0)
            check(s["turn"]["connect"] == s["turn"]["n"] > 0,
                  f"unreachable GM: {s['turn']['connect']}/{s['turn']['n']} turn 'connect'")
            check(s["add"]["ok"] == s["add"]["n"] > 0, "unreachable GM: add still ok")
            a.rule_engine = f"http://127.0.0.1:{re_port}/nope"
            a.mix = "list=1"
            records, *_ = asyncio.run(run_async(a, make_schedule(a)))
            s = summarize(records, 0)
            check(s["list"]["http_4xx"] == s["list"]["n"] > 0,
                  f"unknown route: {s['list']['http_4xx']}/{s['list']['n']} 'http_4xx'")
            # 3. A request that outlives --timeout is a timeout, on schedule.
            a.rule_engine = f"http://127.0.0.1:{re_port}"
            a.mix, a.think, a.timeout, a.duration = "scenario=1", ["scenario=2000:2000"], 0.3, 0.2
            t0 = time.monotonic()
            records, *_ = asyncio.run(run_async(a, make_schedule(a)))
            s = summarize(records, 0)
            check(s["scenario"]["timeout"] == s["scenario"]["n"] > 0 and
                  time.monotonic() - t0 < 1.5, f"slow upstream: {s['scenario']['timeout']}/"
                  f"{s['scenario']['n']} 'timeout' after 0.3 s")
    finally:
        for p in (re_proc, gm_proc):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    print("selfcheck: " + ("PASS" if not failures else f"FAIL ({len(failures)})"))
    return 0 if not failures else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--target", required=True)
    r.add_argument("--rule-engine", required=True, help="base URL, e.g. http://127.0.0.1:8080/rule-engine")
    r.add_argument("--ai-gm", required=True)
    r.add_argument("--rate", type=float, required=True, help="requests per second, all classes")
    r.add_argument("--duration", type=float, required=True, help="seconds of arrivals")
    r.add_argument("--mix", default=DEFAULT_MIX)
    r.add_argument("--think", action="append", help="CLASS=MIN:MAX ms the upstream thinks")
    r.add_argument("--riddle-interval-ms", type=int, default=50)
    r.add_argument("--riddle-chars", type=int, default=40)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--warmup", type=float, default=1.0, help="seconds of arrivals not counted")
    r.add_argument("--timeout", type=float, default=30.0)
    r.add_argument("--max-connections", type=int, default=4000)
    r.add_argument("--arrivals", choices=("uniform", "poisson"), default="uniform")
    r.add_argument("--records", required=True)
    rp = sub.add_parser("report")
    rp.add_argument("--records", required=True, help="prefix: PREFIX-{direct,nginx,courier}.tsv")
    rp.add_argument("--rate", type=float, required=True)
    rp.add_argument("--bound-ms", type=float, default=50.0,
                    help="held: fast p99 added over direct <= this, and no errors")
    rp.add_argument("--warmup", type=float, default=1.0)
    rp.add_argument("--results")
    rp.add_argument("--load")
    sc = sub.add_parser("selfcheck")
    sc.add_argument("--demo", required=True)
    args = p.parse_args()
    if args.cmd == "run":
        if args.rate <= 0 or args.duration <= 0:
            raise SystemExit("run: --rate and --duration must be positive")
        return cmd_run(args)
    if args.cmd == "report":
        return cmd_report(args)
    return cmd_selfcheck(args)


if __name__ == "__main__":
    sys.exit(main())
