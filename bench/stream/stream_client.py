#!/usr/bin/env python3
"""Timing client for bench/stream/run.sh: reads streamed HTTP/1.1 responses and stamps each
character with the moment it arrived, so re-chunking by a proxy does not change the figures.

  stream_client.py events URL --streams C --rounds R --interval-ms I [--timeout S]
      C concurrent streams, R times; prints one RESULT line: time to first byte (the first byte
      of the response head), time to the first character of the body, and the gaps between
      consecutive characters (p50/p99/max, and p99 minus the upstream's interval).
  stream_client.py hold URL --streams N [--ready-timeout S] [--hold S]
      opens N streams, prints "READY ready=K streams=N" once K=N have a 200 head and a character
      (or the ready timeout passed), keeps reading for --hold seconds, then prints RESULT.

Standard library only. A response is "complete" only when its framing says so (the terminating
chunk, or all of Content-Length); a close before that counts as truncated.
"""
import argparse
import selectors
import socket
import sys
import time
from urllib.parse import urlsplit


class Stream:
    """One request and its response, decoded incrementally."""

    def __init__(self, host, port, target):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        self.sent = time.monotonic()
        self.sock.sendall(request.encode())
        self.sock.setblocking(False)
        self.buf = bytearray()
        self.first_byte = None
        self.status = None
        self.state = "head"  # head, size, data, data-crlf, trailer, length, close, done
        self.remaining = 0
        self.char_times = []
        self.complete = False
        self.closed = False
        self.error = None

    def on_readable(self):
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            self.error = str(e)
            data = b""
        now = time.monotonic()
        if not data:
            self.closed = True
            if self.state == "close":
                self.complete = True
            return
        if self.first_byte is None:
            self.first_byte = now
        self.buf += data
        self._decode(now)

    def _body(self, view, now):
        # One stamp per UTF-8 character: a byte that is not a continuation byte.
        n = sum(1 for b in view if (b & 0xC0) != 0x80)
        self.char_times.extend([now] * n)

    def _decode(self, now):
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                del self.buf[: end + 4]
                parts = head[0].split(" ")
                self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                headers = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.state = "size"
                elif "content-length" in headers:
                    self.remaining = int(headers["content-length"])
                    self.state = "length"
                else:
                    self.state = "close"
            elif self.state == "size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size_text = bytes(self.buf[:end]).split(b";")[0].strip()
                del self.buf[: end + 2]
                self.remaining = int(size_text, 16)
                self.state = "data" if self.remaining else "trailer"
            elif self.state in ("data", "length", "close"):
                take = len(self.buf) if self.state == "close" else min(self.remaining, len(self.buf))
                if take == 0 and self.state != "length":
                    return
                self._body(memoryview(self.buf)[:take], now)
                del self.buf[:take]
                if self.state == "close":
                    return
                self.remaining -= take
                if self.remaining:
                    return
                if self.state == "length":
                    self.state, self.complete = "done", True
                    return
                self.state = "data-crlf"
            elif self.state == "data-crlf":
                if len(self.buf) < 2:
                    return
                del self.buf[:2]
                self.state = "size"
            elif self.state == "trailer":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                line_empty = end == 0
                del self.buf[: end + 2]
                if line_empty:
                    self.state, self.complete = "done", True
                    return
            else:
                return

    def finished(self):
        return self.complete or self.closed or self.error is not None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def open_streams(url, count):
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    return [Stream(parts.hostname, parts.port or 80, target) for _ in range(count)]


def pump(streams, until, deadline):
    """Reads from every unfinished stream until `until()` holds or the deadline passes."""
    selector = selectors.DefaultSelector()
    for s in streams:
        if not s.finished():
            selector.register(s.sock, selectors.EVENT_READ, s)
    try:
        while not until() and time.monotonic() < deadline:
            events = selector.select(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            for key, _ in events:
                stream = key.data
                stream.on_readable()
                if stream.finished():
                    selector.unregister(stream.sock)
    finally:
        selector.close()


def run_events(args):
    ttfb, first, gaps, chars = [], [], [], []
    ok = truncated = failed = 0
    for _ in range(args.rounds):
        try:
            streams = open_streams(args.url, args.streams)
        except OSError as e:
            print(f"stream_client: connect failed: {e}", file=sys.stderr)
            return 1
        pump(streams, lambda: all(s.finished() for s in streams), time.monotonic() + args.timeout)
        for s in streams:
            if s.complete and s.status == 200:
                ok += 1
            elif s.status == 200 and s.char_times:
                truncated += 1
            else:
                failed += 1
            if s.first_byte is not None:
                ttfb.append(s.first_byte - s.sent)
            if s.char_times:
                first.append(s.char_times[0] - s.sent)
                gaps.extend(b - a for a, b in zip(s.char_times, s.char_times[1:]))
                chars.append(len(s.char_times))
            s.close()
    ms = lambda v: f"{v * 1000:.2f}"
    interval = args.interval_ms / 1000.0
    print(
        "RESULT streams=%d ok=%d truncated=%d failed=%d chars_per_stream=%s "
        "ttfb_p50_ms=%s ttfb_p99_ms=%s first_p50_ms=%s first_p99_ms=%s "
        "gap_p50_ms=%s gap_p99_ms=%s gap_max_ms=%s excess_p99_ms=%s merged=%d gaps=%d"
        % (
            args.streams * args.rounds, ok, truncated, failed,
            (min(chars) if chars else 0),
            ms(percentile(ttfb, 50)), ms(percentile(ttfb, 99)),
            ms(percentile(first, 50)), ms(percentile(first, 99)),
            ms(percentile(gaps, 50)), ms(percentile(gaps, 99)), ms(max(gaps) if gaps else float("nan")),
            ms(percentile(gaps, 99) - interval if gaps else float("nan")),
            # Characters that came in the same read as the one before: a proxy that buffers
            # shows up here even when its p50 gap looks fine.
            sum(1 for g in gaps if g < interval / 10), len(gaps),
        )
    )
    return 0 if ok else 1


def run_hold(args):
    streams = []
    try:
        for _ in range(args.streams):
            streams.append(open_streams(args.url, 1)[0])
    except OSError as e:
        print(f"stream_client: connect failed after {len(streams)} streams: {e}", file=sys.stderr)
    # Streaming means a 200 head and body characters already; an error page does not count.
    ready = lambda: sum(1 for s in streams if s.status == 200 and s.char_times)
    pump(streams, lambda: ready() == len(streams), time.monotonic() + args.ready_timeout)
    print(f"READY ready={ready()} streams={args.streams}", flush=True)
    pump(streams, lambda: False, time.monotonic() + args.hold)
    alive = sum(1 for s in streams if not s.finished())
    statuses = {}
    for s in streams:
        statuses[s.status or 0] = statuses.get(s.status or 0, 0) + 1
    status_text = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    print(f"RESULT streams={args.streams} ready={ready()} alive={alive} "
          f"complete={sum(1 for s in streams if s.complete)} statuses={status_text}", flush=True)
    for s in streams:
        s.close()
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    events = sub.add_parser("events")
    events.add_argument("url")
    events.add_argument("--streams", type=int, default=10)
    events.add_argument("--rounds", type=int, default=1)
    events.add_argument("--interval-ms", type=float, default=50)
    events.add_argument("--timeout", type=float, default=60)
    hold = sub.add_parser("hold")
    hold.add_argument("url")
    hold.add_argument("--streams", type=int, default=200)
    hold.add_argument("--ready-timeout", type=float, default=20)
    hold.add_argument("--hold", type=float, default=5)
    args = parser.parse_args()
    return run_events(args) if args.mode == "events" else run_hold(args)


if __name__ == "__main__":
    sys.exit(main())
