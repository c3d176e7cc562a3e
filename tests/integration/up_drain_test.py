#!/usr/bin/env python3
"""scripts/up.sh drains in order on Ctrl-C: no in-flight request is lost.

Starts up.sh on free loopback ports against already-built binaries, sends concurrent slow AI GM
POSTs, then sends SIGINT to up.sh's whole process group as a terminal's Ctrl-C does (the old
script let every child see it at once: most requests came back 503). Every request must end
200, up.sh must stop the gateway before the workers, the workers before the broker, and every
process it started must be gone. Each wait has a deadline.
Usage: up_drain_test.py REPO_DIR BUILD_DIR
"""
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

REQUESTS = 20
SIGINT_AFTER_S = 0.15


def free_port_pair():
    """A port p with p and p+1 free on loopback (up.sh uses BASE and BASE+1)."""
    for _ in range(200):
        base = random.randint(20000, 59000)
        sockets = []
        try:
            for port in (base, base + 1):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port pair")


def http(method, url, body=None, timeout=30):
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def main():
    repo, build = sys.argv[1], os.path.abspath(sys.argv[2])
    embedded = os.environ.get("EMBEDDED_BROKER", "0") != "0"
    ports = {name: free_port_pair() for name in ("GATEWAY", "ADMIN", "BROKER", "DEMO")}
    run_dir = tempfile.mkdtemp(prefix="courier-up-")
    env = dict(os.environ, COURIER_UP_SKIP_BUILD="1", COURIER_BUILD_DIR=build,
               COURIER_RUN_DIR=run_dir, GATEWAY_PORT=str(ports["GATEWAY"]),
               GATEWAY_ADMIN_PORT=str(ports["ADMIN"]), BROKER_PORT=str(ports["BROKER"]),
               DEMO_PORT=str(ports["DEMO"]), DEMO_AI_GM_LATENCY="uniform:600:800",
               COURIER_LOG_LEVEL="info")
    for name in ("RULE_ENGINE_URL", "AI_GM_URL"):
        env.pop(name, None)
    up = subprocess.Popen(["scripts/up.sh"], cwd=repo, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(up.stdout), daemon=True)
    reader.start()
    pids = []
    failures = []
    try:
        base = f"http://127.0.0.1:{ports['GATEWAY']}"
        deadline = time.monotonic() + 30
        while not any("Courier is up" in line for line in output):
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("up.sh did not come up:\n" + "".join(output))
            time.sleep(0.05)
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", "".join(output))]
        # Ready means every service has a worker; wait for ai-gm's anyway (its health skips latency).
        while http("GET", base + "/ai-gm/health", timeout=5)[0] != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("ai-gm never answered")
            time.sleep(0.05)

        statuses = [None] * REQUESTS

        def post(i):
            try:
                statuses[i] = http("POST", base + "/ai-gm/api/v1/game/turn",
                                   b'{"action":"look"}', timeout=30)[0]
            except Exception as e:  # noqa: BLE001 - any failure is a lost request
                statuses[i] = repr(e)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(REQUESTS)]
        for t in threads:
            t.start()
        time.sleep(SIGINT_AFTER_S)  # the load itself, not synchronisation: ^C mid-flight
        os.killpg(up.pid, signal.SIGINT)
        for t in threads:
            t.join(timeout=40)
        try:
            code = up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = "timeout"
        reader.join(timeout=5)
        text = "".join(output)

        lost = [s for s in statuses if s != 200]
        if lost:
            failures.append(f"{len(lost)} of {REQUESTS} requests not 200: {statuses}")
        if code != 0:
            failures.append(f"up.sh exit status {code}")
        # With EMBEDDED_BROKER=1 the broker is the gateway's: no broker process to stop.
        groups = ("gateway", "workers") + (() if embedded else ("brokers",)) + ("demo upstreams",)
        order = [text.find(f"  {group} stopped") for group in groups]
        if -1 in order or order != sorted(order):
            failures.append(f"stop order wrong or incomplete: {order}")
        if embedded and "  brokers stopped" in text:
            failures.append("a broker process was started beside the embedded broker")
        if embedded:
            with open(os.path.join(run_dir, "logs", "gateway.log")) as log:
                if "broker broker-1 ready" not in log.read():
                    failures.append("the gateway's log does not show its broker ready")
        expected = 5 if embedded else 6
        if len(pids) < expected:
            failures.append(f"expected at least {expected} processes, saw pids {pids}")
        still = [p for p in pids if alive(p)]
        if still:
            failures.append(f"processes still running after up.sh exited: {still}")
        print(text)
        print(f"statuses: {statuses}")
    finally:
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print(f"ok: {REQUESTS} in-flight requests all 200, stopped in order, nothing left running")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
