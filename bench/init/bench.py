#!/usr/bin/env python3
"""The init benchmark: `kinit init` on a 3-node lab (1 control plane, 2 workers), from hosts
with nothing installed to every node Ready, and the no-change re-run, repeated.

"Bundle staged" means the lab bundle is built and unpacked on this machine beforehand (as an
operator downloads it once); copying its binaries to the hosts is part of every timed run. Each
fresh run starts from `kinit reset` (hosts as the node image left them) and an empty state
directory (a new PKI), so nothing of the previous run is reused on the hosts.

`kinit init` returns once its last task has seen every node Ready through the API, so its wall
time is the time to a working cluster; the script checks the nodes with kubectl after each run.

usage: bench/init/bench.py [--runs 5] [--kinit target/release/kinit]
Needs root (the lab). Targets (issue 5): fresh <= 60 s, re-run <= 5 s, on a 2-core machine.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

LAB = "bench-init"
FRESH_TARGET = 60.0
RERUN_TARGET = 5.0


def sh(*args, check=True):
    result = subprocess.run(args, text=True, capture_output=True)
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def kubectl():
    explicit = os.environ.get("KINIT_KUBECTL")
    if explicit:
        return explicit
    cached = Path(os.environ.get("KINIT_CACHE", "/var/cache/kinit")) / "tools/kubernetes-client/usr/bin/kubectl"
    return str(cached) if cached.exists() else "kubectl"


def timed(*args):
    started = time.monotonic()
    result = sh(*args)
    return time.monotonic() - started, result


def ready_nodes(admin):
    out = sh(kubectl(), "--kubeconfig", str(admin), "get", "nodes", "--no-headers").stdout
    return sum(1 for line in out.splitlines() if line.split()[1] == "Ready")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kinit", default="target/release/kinit")
    args = parser.parse_args()
    kinit = str(Path(args.kinit).resolve())

    sh(kinit, "bundle", "create", "--source", "lab")
    sh(kinit, "lab", "down", "--name", LAB, check=False)
    sh(kinit, "lab", "up", "--name", LAB, "--nodes", "3")
    home = Path(os.environ.get("KINIT_HOME", Path.home() / ".kinit"))
    config = home / "labs" / LAB / "cluster.yaml"
    state = config.parent / ".kinit" / LAB
    admin = state / "kubernetes" / "admin.conf"

    fresh, rerun = [], []
    try:
        for run in range(args.runs):
            sh(kinit, "reset", "-c", str(config), "--yes")
            shutil.rmtree(state, ignore_errors=True)
            seconds, _ = timed(kinit, "init", "-c", str(config))
            assert ready_nodes(admin) == 3, "init returned before every node was Ready"
            fresh.append(seconds)
            seconds, result = timed(kinit, "init", "-c", str(config), "-o", "json")
            changed = sum(
                int(line.split('"changed":')[1].split(",")[0])
                for line in result.stdout.splitlines()
                if '"event":"host_summary"' in line
            )
            assert changed == 0, f"the re-run changed {changed} things"
            rerun.append(seconds)
            print(f"run {run + 1}: fresh {fresh[-1]:.1f} s, re-run {rerun[-1]:.2f} s", file=sys.stderr)
    finally:
        sh(kinit, "lab", "down", "--name", LAB, check=False)

    def row(name, values, target):
        median = statistics.median(values)
        return (
            f"| {name} | **{median:.2f} s** | {min(values):.2f} – {max(values):.2f} s "
            f"| {target:.0f} s | {median / target:.2f} |"
        )

    print(f"`kinit init` on 3 lab nodes (1 control plane, 2 workers), {args.runs} runs, medians:\n")
    print("| case | median | range | target | median / target |")
    print("|---|---|---|---|---|")
    print(row("fresh, to every node Ready", fresh, FRESH_TARGET))
    print(row("no-change re-run", rerun, RERUN_TARGET))


if __name__ == "__main__":
    main()
