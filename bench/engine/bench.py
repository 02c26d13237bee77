#!/usr/bin/env python3
"""The engine benchmark: kinit vs Ansible vs the floor, on lab hosts, in one run.

For each host count, each tool runs the same 22-task playbook (kinit.yaml, ansible.yml,
floor.sh) from a clean state (first run: everything changes) and again (second run: nothing
changes), repeated; the medians and the ratios are printed as a Markdown table. Then a 100 MB
file is copied to 3 hosts by kinit and by scp.

usage: bench/engine/bench.py [--hosts 3 10] [--runs 3] [--kinit target/release/kinit]
Needs root (the lab), Debian's python3-venv (Ansible is installed from PyPI into a cache).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = Path(os.environ.get("KINIT_CACHE", "/var/cache/kinit")) / "bench"
LAB = "bench"


def sh(*args, check=True, **kwargs):
    return subprocess.run(args, check=check, text=True, capture_output=True, **kwargs)


def ansible_playbook():
    venv = CACHE / "ansible-venv"
    binary = venv / "bin" / "ansible-playbook"
    if not binary.exists():
        print("installing ansible-core from PyPI into", venv, file=sys.stderr)
        r = sh("python3", "-m", "venv", str(venv), check=False)
        if r.returncode != 0:
            sh("apt-get", "install", "-y", "-qq", "python3-venv")
            sh("python3", "-m", "venv", str(venv))
        sh(str(venv / "bin" / "pip"), "install", "-q", "ansible-core")
    version = sh(str(binary), "--version").stdout.splitlines()[0]
    return binary, version


def blob():
    path = HERE / "files" / "blob.bin"
    if not path.exists() or path.stat().st_size != 1 << 20:
        # Deterministic content, so every run copies the same megabyte.
        data = bytearray()
        x = 0x12345678
        while len(data) < 1 << 20:
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF
            data += x.to_bytes(4, "little")
        path.write_bytes(bytes(data[: 1 << 20]))
    return path


def lab_up(kinit, count):
    sh(kinit, "lab", "down", "--name", LAB, check=False)
    sh(kinit, "lab", "up", "--name", LAB, "--nodes", str(count))
    home = Path(os.environ.get("KINIT_HOME", Path.home() / ".kinit"))
    lab = home / "labs" / LAB
    status = sh(kinit, "lab", "status", "--name", LAB).stdout.splitlines()[1:]
    hosts = [(line.split()[0], line.split()[1]) for line in status if line.strip()]
    return lab, hosts


def reset(hosts):
    script = (
        "systemctl disable --now bench >/dev/null 2>&1; rm -rf /opt/bench /etc/bench /var/lib/bench "
        "/etc/systemd/system/bench.service /etc/sysctl.d/90-bench-a.conf /etc/sysctl.d/90-bench-b.conf; "
        "systemctl daemon-reload; sysctl -qw net.core.somaxconn=4096 net.ipv4.tcp_keepalive_time=7200"
    )
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(lambda h: sh("docker", "exec", f"kinit-{LAB}-{h[0]}", "sh", "-c", script), hosts))


def run_kinit(kinit, lab):
    out = sh(
        kinit, "play", str(HERE / "kinit.yaml"), "-c", str(lab / "cluster.yaml"),
        "--templates-dir", str(HERE / "templates"), "--files-dir", str(HERE / "files"), "-o", "json",
    ).stdout
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return sum(e["changed"] for e in events if e["event"] == "host_summary")


def run_ansible(ansible, workdir):
    out = sh(str(ansible), "-i", str(workdir / "inventory.yml"), str(HERE / "ansible.yml"),
             env={**os.environ, "ANSIBLE_CONFIG": str(workdir / "ansible.cfg")}, cwd=HERE).stdout
    return sum(int(n) for n in re.findall(r"changed=(\d+)", out))


def run_floor(lab, hosts):
    out = sh(str(HERE / "floor.sh"), str(lab / "id_ed25519"), str(lab / "known_hosts"),
             *[f"{name}={address}" for name, address in hosts]).stdout
    return sum(int(n) for n in re.findall(r"changed=(\d+)", out))


def ansible_files(workdir, lab, hosts, forks):
    inventory = {"all": {"hosts": {}, "vars": {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(lab / "id_ed25519"),
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab / 'known_hosts'} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
    }}}
    for name, address in hosts:
        inventory["all"]["hosts"][name] = {"ansible_host": address, "host": {"name": name, "address": address}}
    (workdir / "inventory.yml").write_text(json.dumps(inventory))
    (workdir / "ansible.cfg").write_text(
        f"[defaults]\nforks = {forks}\nhost_key_checking = True\nretry_files_enabled = False\n"
        "interpreter_python = /usr/bin/python3\n[ssh_connection]\npipelining = True\n"
    )


def timed(action):
    start = time.perf_counter()
    changed = action()
    return time.perf_counter() - start, changed


def engine(kinit, ansible, counts, runs):
    rows = []
    for count in counts:
        lab, hosts = lab_up(kinit, count)
        workdir = Path(tempfile.mkdtemp())
        ansible_files(workdir, lab, hosts, forks=count)
        tools = {
            "kinit": lambda: run_kinit(kinit, lab),
            "ansible": lambda: run_ansible(ansible, workdir),
            "floor": lambda: run_floor(lab, hosts),
        }
        times = {(tool, phase): [] for tool in tools for phase in ("first", "second")}
        for rep in range(runs):
            for tool, action in tools.items():
                reset(hosts)
                first, changed_first = timed(action)
                second, changed_second = timed(action)
                if changed_first == 0 or changed_second != 0:
                    sys.exit(f"{tool}: first run changed {changed_first}, second {changed_second}: not the benchmark's semantics")
                times[(tool, "first")].append(first)
                times[(tool, "second")].append(second)
                print(f"{count} hosts, run {rep + 1}, {tool}: first {first:.2f} s ({changed_first} changes), "
                      f"second {second:.2f} s", file=sys.stderr)
        for phase in ("first", "second"):
            med = {tool: statistics.median(times[(tool, phase)]) for tool in tools}
            rows.append((count, phase, med, {tool: times[(tool, phase)] for tool in tools}))
        sh(kinit, "lab", "down", "--name", LAB, check=False)
    return rows


def copy_throughput(kinit, runs):
    lab, hosts = lab_up(kinit, 3)
    big = CACHE / "copy-100MB.bin"
    if not big.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(big, "wb") as f:
            f.write(os.urandom(100 * 1024 * 1024))
    playbook = Path(tempfile.mkdtemp()) / "copy.yaml"
    playbook.write_text(f"- name: copy\n  hosts: all\n  gather_facts: false\n  tasks:\n"
                        f"    - {{ name: big, copy: {{ src: {big}, dest: /var/tmp/big.bin, mode: \"0644\" }} }}\n")
    clean = lambda: [sh("docker", "exec", f"kinit-{LAB}-{n}", "rm", "-f", "/var/tmp/big.bin") for n, _ in hosts]
    scp = ["scp", "-q", "-i", str(lab / "id_ed25519"), "-o", f"UserKnownHostsFile={lab / 'known_hosts'}",
           "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes"]
    results = {"kinit": [], "scp": []}
    for _ in range(runs):
        clean()
        results["kinit"].append(timed(lambda: sh(kinit, "play", str(playbook), "-c", str(lab / "cluster.yaml"), "-o", "json") and 1)[0])
        clean()

        def scp_all():
            procs = [subprocess.Popen(scp + [str(big), f"root@{a}:/var/tmp/big.bin"]) for _, a in hosts]
            for p in procs:
                assert p.wait() == 0
            return 1

        results["scp"].append(timed(scp_all)[0])
    sh(kinit, "lab", "down", "--name", LAB, check=False)
    return {tool: statistics.median(t) for tool, t in results.items()}, results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kinit", default=str(ROOT / "target" / "release" / "kinit"))
    parser.add_argument("--skip-copy", action="store_true")
    args = parser.parse_args()
    blob()
    ansible, version = ansible_playbook()
    rows = engine(args.kinit, ansible, args.hosts, args.runs)
    print(f"\n{version}; medians of {args.runs} runs, seconds\n")
    print("| hosts | run | kinit | Ansible | floor | Ansible / kinit | kinit / floor |")
    print("|---|---|---|---|---|---|---|")
    for count, phase, med, _ in rows:
        print(f"| {count} | {phase} | {med['kinit']:.2f} | {med['ansible']:.2f} | {med['floor']:.2f} | "
              f"{med['ansible'] / med['kinit']:.1f}× | {med['kinit'] / med['floor']:.2f}× |")
    print("\nall runs:")
    for count, phase, _, all_times in rows:
        print(f"  {count} hosts, {phase}: " + "; ".join(f"{t} " + " ".join(f"{x:.2f}" for x in v) for t, v in all_times.items()))
    if not args.skip_copy:
        med, all_times = copy_throughput(args.kinit, args.runs)
        total_mb = 3 * 100 * 1.048576
        print(f"\n100 MiB to 3 hosts: kinit {med['kinit']:.2f} s ({total_mb / med['kinit']:.0f} MB/s), "
              f"scp {med['scp']:.2f} s ({total_mb / med['scp']:.0f} MB/s); kinit/scp {med['kinit'] / med['scp']:.2f}×")
        print("  all runs: " + "; ".join(f"{t} " + " ".join(f"{x:.2f}" for x in v) for t, v in all_times.items()))


if __name__ == "__main__":
    main()
