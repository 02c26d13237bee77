#!/usr/bin/env python3
"""The backup benchmark: `kinit backup create` against `etcdctl snapshot save`, on an etcd
database filled to about 1 GiB, in the same run, alternating.

etcdctl's time is the snapshot alone, written on the member's own disk (the command run over
`kinit lab ssh`, whose few tens of milliseconds are included). kinit's time is the whole
backup as an operator gets it: etcd's snapshot stream through an SSH tunnel into the
operator's file, hashed on the way, the check of etcd's trailing sha256, etcd's reading of
the file (`snapshot status`), and the PKI archive.

usage: bench/backup/bench.py [--runs 3] [--gib 1.0] [--kinit target/release/kinit]
Needs root (the lab). Target (issue 6): kinit <= 1.2 x etcdctl.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

LAB = "bench-backup"
TARGET = 1.2
ETCDCTL = (
    "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt "
    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key"
)


def sh(*args, check=True, env=None):
    result = subprocess.run(args, text=True, capture_output=True, env=env)
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--kinit", default="target/release/kinit")
    args = parser.parse_args()
    kinit = str(Path(args.kinit).resolve())

    home = Path(os.environ.get("KINIT_HOME", Path.home() / ".kinit"))
    config = home / "labs" / LAB / "cluster.yaml"
    state = config.parent / ".kinit" / LAB
    env = dict(os.environ, KINIT_LAB=LAB)

    def node(command, check=True):
        return sh(kinit, "lab", "ssh", "node1", "--", command, check=check, env=env)

    sh(kinit, "lab", "down", "--name", LAB, check=False)
    sh(kinit, "lab", "up", "--name", LAB, "--nodes", "1")
    try:
        shutil.rmtree(state, ignore_errors=True)
        sh(kinit, "init", "-c", str(config))
        # 1 MiB values (etcd's request limit is 1.5 MiB), incompressible.
        count = int(args.gib * 1024)
        print(f"filling etcd with {count} values of 1 MiB", file=sys.stderr)
        node(
            "head -c 1048576 /dev/urandom > /root/value && "
            f"for i in $(seq 1 {count}); do {ETCDCTL} put /bench/$i < /root/value >/dev/null || exit 1; done"
        )
        size = int(node(f"{ETCDCTL} endpoint status -w json").stdout and json.loads(
            node(f"{ETCDCTL} endpoint status -w json").stdout)[0]["Status"]["dbSize"])
        print(f"etcd database: {size / 2**30:.2f} GiB", file=sys.stderr)

        etcdctl, kinit_times = [], []
        for run in range(args.runs):
            node("rm -f /root/snapshot.db")
            started = time.monotonic()
            node(f"{ETCDCTL} snapshot save /root/snapshot.db >/dev/null")
            etcdctl.append(time.monotonic() - started)
            node("rm -f /root/snapshot.db")
            shutil.rmtree(state / "backups", ignore_errors=True)
            started = time.monotonic()
            sh(kinit, "backup", "create", "-c", str(config), env=env)
            kinit_times.append(time.monotonic() - started)
            print(f"run {run + 1}: etcdctl {etcdctl[-1]:.2f} s, kinit {kinit_times[-1]:.2f} s", file=sys.stderr)
    finally:
        sh(kinit, "lab", "down", "--name", LAB, check=False)

    e, k = statistics.median(etcdctl), statistics.median(kinit_times)
    print(f"etcd database of {size / 2**30:.2f} GiB, {args.runs} runs, medians:\n")
    print("| tool | median | runs | kinit / etcdctl | target |")
    print("|---|---|---|---|---|")
    print(f"| `etcdctl snapshot save` (on the member) | {e:.2f} s | {', '.join(f'{t:.2f}' for t in etcdctl)} | | |")
    print(f"| `kinit backup create` (streamed here, verified) | {k:.2f} s | {', '.join(f'{t:.2f}' for t in kinit_times)} | **{k / e:.2f}×** | ≤ {TARGET}× |")


if __name__ == "__main__":
    main()
