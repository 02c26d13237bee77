#!/usr/bin/env python3
"""The console's load benchmark (issue 7), against the release `kinit-console` on loopback:

1. the overview page, signed in, under wrk with 200 concurrent connections: p99 latency
   (target <= 20 ms), median of --runs runs;
2. 100 simultaneous live-progress streams (SSE) of one running operation: every stream must
   get the log and the operation's end, with no error; the console's resident memory before,
   at its peak and after (bounded: it must come back down);
3. the islands' payload as a browser downloads it (gzip): wasm + JavaScript <= 400 KB.

The cluster configuration names three hosts on loopback. One of them is a TCP listener this
script runs that accepts SSH connections and never answers, so a backup started from the
console stays running (waiting for the host) while the streams follow it; the others refuse
connections, so the overview shows unreachable hosts, as it would in an outage. The console
never leaves loopback.

    python3 bench/console/bench.py [--runs 3] [--duration 15]
"""

import argparse
import html.parser
import http.client
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "benchmark password 1234"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def silent_ssh_host():
    """Accepts connections and says nothing: an SSH host that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held = []

    def accept():
        while True:
            conn, _ = server.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]


CONFIG = """apiVersion: kinit.io/v1alpha1
kind: Cluster
metadata:
  name: bench
kubernetesVersion: v1.20.2
ssh:
  user: root
hosts:
  - name: cp1
    address: 127.0.0.1
    roles: [control-plane]
    ssh:
      port: {hanging}
  - name: w1
    address: 127.0.0.2
    roles: [worker]
    ssh:
      port: {closed}
  - name: w2
    address: 127.0.0.3
    roles: [worker]
    ssh:
      port: {closed}
"""


class Fields(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.csrf = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name") == "csrf":
            self.csrf = attrs.get("value")


def connect(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=60)


def cookies(response):
    jar = {}
    for header, value in response.getheaders():
        if header.lower() == "set-cookie":
            name, _, rest = value.partition("=")
            jar[name] = rest.split(";")[0]
    return jar


def sign_up(port):
    conn = connect(port)
    conn.request("GET", "/setup")
    response = conn.getresponse()
    page = response.read().decode()
    jar = cookies(response)
    fields = Fields()
    fields.feed(page)
    body = f"csrf={fields.csrf}&name=bench&password={PASSWORD.replace(' ', '+')}"
    conn.request("POST", "/setup", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
    })
    response = conn.getresponse()
    response.read()
    session = cookies(response)["__Host-kinit-session"]
    cookie = f"__Host-kinit-session={session}"
    conn.request("GET", "/backups", headers={"Cookie": cookie})
    fields = Fields()
    fields.feed(conn.getresponse().read().decode())
    return cookie, fields.csrf


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wrk_p99(port, cookie, duration):
    out = subprocess.run(
        ["wrk", "-t2", "-c200", f"-d{duration}s", "--latency", "-H", f"Cookie: {cookie}",
         f"https://127.0.0.1:{port}/"],
        check=True, capture_output=True, text=True).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * unit[m.group(2)]

    requests = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return ms(50), ms(99), requests, (errors.group(1) if errors else "0"), \
        (socket_errors.group(1) if socket_errors else "none")


def follow(port, cookie, operation, results, index):
    try:
        conn = connect(port)
        conn.request("GET", f"/operations/{operation}/events", headers={"Cookie": cookie})
        response = conn.getresponse()
        if response.status != 200:
            results[index] = f"HTTP {response.status}"
            return
        lines, ended = 0, None
        event = None
        while True:
            raw = response.fp.readline()
            if not raw:
                break
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                if event == "end":
                    ended = line[5:].strip()
                    break
                lines += 1
            elif line == "":
                event = None
        results[index] = (lines, ended)
    except Exception as e:  # noqa: BLE001 - any failure of a stream is a result to report
        results[index] = f"error: {e}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=15)
    args = parser.parse_args()

    binary = os.path.join(ROOT, "target/release/kinit-console")
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "kinit-console"], cwd=ROOT,
                   check=True)
    work = tempfile.mkdtemp(prefix="kinit-console-bench-")
    config = os.path.join(work, "cluster.yaml")
    with open(config, "w") as f:
        f.write(CONFIG.format(hanging=silent_ssh_host(), closed=free_port()))
    port = free_port()
    console = subprocess.Popen(
        [binary, "-c", config, "--listen", f"127.0.0.1:{port}", "--dir", os.path.join(work, "console"),
         "--health-interval", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        cookie, csrf = sign_up(port)
        time.sleep(2)  # the first look at the (unreachable) hosts
        idle = rss_kib(console.pid)

        # 1. The overview under load.
        runs = []
        peak = idle
        for run in range(args.runs):
            sampler_stop = threading.Event()
            peaks = [0]

            def sample():
                while not sampler_stop.is_set():
                    peaks[0] = max(peaks[0], rss_kib(console.pid))
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample)
            sampler.start()
            runs.append(wrk_p99(port, cookie, args.duration))
            sampler_stop.set()
            sampler.join()
            peak = max(peak, peaks[0])
            p50, p99, rps, non2xx, sockets = runs[-1]
            print(f"run {run + 1}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, {rps:.0f} req/s, "
                  f"non-2xx {non2xx}, socket errors {sockets}", file=sys.stderr)
        after_wrk = rss_kib(console.pid)

        # 2. 100 live streams of one running operation.
        conn = connect(port)
        conn.request("POST", "/backups", body=f"csrf={csrf}", headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded",
            "Origin": f"https://127.0.0.1:{port}"})
        response = conn.getresponse()
        response.read()
        location = response.getheader("Location") or ""
        operation = location.rsplit("/", 1)[-1]
        assert response.status == 303 and operation.isdigit(), (response.status, location)
        results = [None] * 100
        threads = [threading.Thread(target=follow, args=(port, cookie, operation, results, i))
                   for i in range(100)]
        started = time.monotonic()
        for t in threads:
            t.start()
        stream_peak = 0
        while any(t.is_alive() for t in threads) and time.monotonic() - started < 300:
            stream_peak = max(stream_peak, rss_kib(console.pid))
            time.sleep(0.2)
        for t in threads:
            t.join(timeout=1)
        streamed = time.monotonic() - started
        failures = [r for r in results if not isinstance(r, tuple)]
        ends = {r[1] for r in results if isinstance(r, tuple)}
        line_counts = sorted({r[0] for r in results if isinstance(r, tuple)})
        time.sleep(1)
        after_streams = rss_kib(console.pid)

        # 3. What a browser downloads for the islands.
        conn = connect(port)
        conn.request("GET", "/", headers={"Cookie": cookie})
        page = conn.getresponse().read().decode()
        loader = re.search(r'src="(/pkg/[^"]+/islands.js)"', page).group(1)
        base = loader.rsplit("/", 1)[0]
        payload = {}
        for name in ["islands.js", "kinit_console_ui.js", "kinit_console_ui_bg.wasm"]:
            conn.request("GET", f"{base}/{name}", headers={"Cookie": cookie, "Accept-Encoding": "gzip"})
            response = conn.getresponse()
            payload[name] = (len(response.read()), response.getheader("Content-Encoding") or "identity")
    finally:
        console.terminate()
        console.wait()

    p99s = [r[1] for r in runs]
    p50s = [r[0] for r in runs]
    rps = [r[2] for r in runs]
    p99 = statistics.median(p99s)
    total = sum(size for size, _ in payload.values())
    print(f"\nOverview page, 200 connections (wrk -t2 -c200 -d{args.duration}s), {args.runs} runs, medians:\n")
    print("| measure | median | runs | target |")
    print("|---|---|---|---|")
    print(f"| p50 latency | {statistics.median(p50s):.2f} ms | {', '.join(f'{v:.2f}' for v in p50s)} | |")
    print(f"| p99 latency | {p99:.2f} ms | {', '.join(f'{v:.2f}' for v in p99s)} | ≤ 20 ms |")
    print(f"| requests/s | {statistics.median(rps):.0f} | {', '.join(f'{v:.0f}' for v in rps)} | |")
    print(f"| non-2xx / socket errors | {', '.join(r[3] for r in runs)} / {'; '.join(r[4] for r in runs)} | | none |")
    print(f"\n100 live streams of operation {operation}: {100 - len(failures)} followed it to its end "
          f"({', '.join(sorted(e or '?' for e in ends))}) in {streamed:.1f} s, lines per stream "
          f"{line_counts}; failures: {failures[:3] if failures else 'none'}")
    print(f"\nResident memory: idle {idle / 1024:.1f} MiB, peak under wrk {peak / 1024:.1f} MiB, "
          f"after wrk {after_wrk / 1024:.1f} MiB, peak with 100 streams {stream_peak / 1024:.1f} MiB, "
          f"after them {after_streams / 1024:.1f} MiB")
    print(f"\nIslands payload (gzip): " + ", ".join(
        f"{name} {size / 1024:.1f} KiB ({enc})" for name, (size, enc) in payload.items())
          + f"; total {total / 1024:.1f} KiB (target ≤ 400 KB)")
    ok = p99 <= 20 and not failures and total <= 400_000
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
