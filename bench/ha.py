"""High availability on etcd: failover time after kill -9 of the leader, and submit throughput etcd vs SQLite.

**Failover** (``--runs`` times, 10 by default), each on a fresh key prefix of one 3-member etcd
(``scripts/etcd.sh``) with 3 real ``updraft server`` processes (``etcd_lease_ttl`` 2 s):

* one simulated node registers and heartbeats at 1 Hz to a server that will not be killed (a follower, which
  forwards its heartbeats to the leader);
* two clients submit in a closed loop (each with an ``Idempotency-Key``, resent until answered), one to each
  surviving server, from before the kill to after the first placement;
* the leader is killed with SIGKILL at ``t0``; the failover time is the first placement event (``placed``,
  ``offloaded``…: its server timestamp, same machine) after ``t0``, minus ``t0``.

``lost``: submits answered 2xx whose task is not stored with their key (read from a surviving server);
``double_running``: tasks with more than one unfinished attempt, or a token issued twice.

**Throughput**: ``bench/load.py``'s generator (its ``drive``: closed-loop submitters, simulated nodes with
heartbeats and long polls, listers) against one SQLite server, then against the leader of 3 servers on etcd,
``--seconds`` each (15 by default), same M and N, authentication off on both (loopback). Both in this run,
on this machine.

Writes ``bench/results/ha.json``: ``median_failover_s``, ``runs`` (each run's seconds), ``lost``,
``double_running``, ``etcd_accepted_per_s``, ``sqlite_accepted_per_s``, and the p99s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _common import RESULTS, table, write_results
from load import SERVER_CONFIG, check_store, drive

from tests.cluster import Cluster, wait_for
from tests.ha_cluster import EtcdCluster, HaCluster

TASK = {"image": "busybox:1.36", "command": ["true"], "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
PLACED = {"placed", "offloaded", "placed-local", "migrated"}


class Submitter(threading.Thread):
    def __init__(self, url: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.stop = url, stop
        self.acked: dict[str, str] = {}

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                key = uuid.uuid4().hex
                while not self.stop.is_set():
                    try:
                        r = http.post(self.url + "/v1/tasks", json={**TASK, "env": {"KEY": key}},
                                      headers={"Idempotency-Key": key})
                    except httpx.HTTPError:
                        time.sleep(0.05)
                        continue
                    if r.status_code < 300:
                        self.acked[key] = r.json()["id"]
                        break
                    time.sleep(0.05)
                time.sleep(0.02)


def heartbeats(url: str, name: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=2) as http:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                http.post(f"{url}/v1/nodes/{name}/heartbeat", json={"cpu_pct": 5, "memory_pct": 10, "sent_at": time.time()})
            stop.wait(1.0)


def failover_run(etcd: EtcdCluster, workdir: Path, narrate: Any = lambda *_: None, lease_ttl: int = 2) -> dict[str, Any]:
    ha = HaCluster(workdir, etcd, server_config={"image_policy": "off"}, lease_ttl=lease_ttl)
    stop = threading.Event()
    try:
        ha.start_servers()
        leader = ha.wait_leader()
        narrate(f"servers s0, s1, s2 on {', '.join(etcd.endpoints)}; s{leader} leads (term "
                f"{(ha.cluster_view(leader) or {}).get('leader', {}).get('term')})")
        survivors = [i for i in range(3) if i != leader]
        follower = ha.urls[survivors[0]]
        r = httpx.put(f"{follower}/v1/nodes/sim-0", json={"capacity": {"cpu": "64", "memory": "64Gi"}}, timeout=10)
        r.raise_for_status()
        beat = threading.Thread(target=heartbeats, args=(follower, "sim-0", stop), daemon=True)
        beat.start()
        wait_for(lambda: httpx.get(f"{ha.urls[leader]}/v1/nodes/sim-0").json()["state"] == "ready", 30, what="node ready")
        submitters = [Submitter(ha.urls[i], stop) for i in survivors]
        for s in submitters:
            s.start()
        wait_for(lambda: sum(len(s.acked) for s in submitters) >= 10, 30, what="submits before the kill")
        proc = ha.servers[leader]
        assert proc is not None
        t0 = time.time()
        proc.kill9()
        narrate(f"kill -9 s{leader} with {sum(len(s.acked) for s in submitters)} submits answered so far")

        def first_placement() -> float | None:
            events = httpx.get(f"{follower}/v1/events", params={"limit": 10000}, timeout=5).json()
            after = [e["at"] for e in events if e["kind"] in PLACED and e["at"] > t0]
            return min(after) if after else None

        placed_at = wait_for(first_placement, 60, interval=0.02, what="a placement by the new leader")
        new = ha.wait_leader(exclude=(leader,))
        narrate(f"s{new} leads now (term {(ha.cluster_view(new) or {}).get('leader', {}).get('term')}) and placed a task "
                f"{placed_at - t0:.2f} s after the kill")
        time.sleep(0.5)  # a few more submits under the new leader
        stop.set()
        for s in submitters:
            s.join(15)
        tasks = httpx.get(f"{ha.urls[new]}/v1/tasks", params={"limit": 10000}, timeout=10).json()
        key_of = {t["id"]: t["spec"]["env"].get("KEY") for t in tasks}
        acked = {k: v for s in submitters for k, v in s.acked.items()}
        lost = sum(key_of.get(tid) != key for key, tid in acked.items())
        tokens = Counter(a["token"] for t in tasks for a in t["attempts"])
        double = sum(sum(a["finished_at"] is None for a in t["attempts"]) > 1 for t in tasks)
        double += sum(n > 1 for n in tokens.values())
        return {"failover_s": round(placed_at - t0, 3), "acked": len(acked), "lost": lost, "double_running": double}
    finally:
        stop.set()
        ha.close()


def sqlite_throughput(m: int, n: int, seconds: float) -> dict[str, Any]:
    """``bench/load.py``'s run on one SQLite server, with authentication off as on the etcd side."""
    with Cluster(server_config={**SERVER_CONFIG, "auth": False}) as cluster:
        cluster.start_server()
        result = asyncio.run(drive(cluster, m, n, seconds))
        assert cluster.server is not None
        cluster.server.stop(timeout=60)
        result["lost"] = check_store(cluster.dir / "server" / "updraft.db", result.pop("_accepted"))[0]
    return result


def etcd_throughput(etcd: EtcdCluster, workdir: Path, m: int, n: int, seconds: float) -> dict[str, Any]:
    ha = HaCluster(workdir, etcd, server_config=SERVER_CONFIG)
    try:
        ha.start_servers()
        leader = ha.wait_leader()
        ha.port, ha.server = ha.ports[leader], ha.servers[leader]  # drive() loads one server: the leader
        result = asyncio.run(drive(ha, m, n, seconds))
        accepted = result.pop("_accepted")
        tasks = httpx.get(f"{ha.urls[leader]}/v1/tasks", params={"limit": 10000}, timeout=30).json()
        key_of = {t["id"]: t["spec"]["env"].get("LOAD_KEY") for t in tasks}
        result["lost"] = sum(key_of.get(tid) != key for key, tid in accepted.items())
        return result
    finally:
        ha.close()


def demo(work: Path) -> None:
    print("starting a 3-member etcd cluster and 3 servers on it; submitting tasks while the leader is killed ...")
    with EtcdCluster(work) as etcd:
        r = failover_run(etcd, work / "demo", narrate=print)
    print(f"kill -9 of the leader → first placement by the new leader: {r['failover_s']:.2f} s; "
          f"{r['acked']} submits answered 2xx, {r['lost']} lost, {r['double_running']} tasks with two attempts at once")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="failover runs (median reported)")
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds of load per store")
    ap.add_argument("--submitters", type=int, default=32)
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--lease-ttl", type=int, default=2, help="etcd_lease_ttl of the servers in the failover runs")
    ap.add_argument("--failover-only", action="store_true",
                    help="failover runs only, added to ha.json under failover_by_lease_ttl")
    ap.add_argument("--demo", action="store_true", help="one narrated failover run; no results file (make demo-ha)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="updraft-ha-bench-"))
    if args.demo:
        demo(work)
        return
    runs: list[dict[str, Any]] = []
    with EtcdCluster(work) as etcd:
        for i in range(args.runs):
            runs.append(failover_run(etcd, work / f"run{i}", lease_ttl=args.lease_ttl))
            print(f"failover run {i + 1}/{args.runs}: {runs[-1]}", flush=True)
        if args.failover_only:  # recorded beside the main figures under failover_by_lease_ttl
            seconds = [r["failover_s"] for r in runs]
            print(f"lease TTL {args.lease_ttl} s: median failover {statistics.median(seconds):.3f} s over {seconds}")
            path = RESULTS / "ha.json"
            figures = json.loads(path.read_text()) if path.exists() else {}
            figures.setdefault("failover_by_lease_ttl", {})[str(args.lease_ttl)] = {
                "median_failover_s": round(statistics.median(seconds), 3), "runs": seconds,
                "lost": sum(r["lost"] for r in runs), "double_running": sum(r["double_running"] for r in runs)}
            write_results("ha", figures)
            return
        print(f"load on etcd: {args.submitters} submitters, {args.nodes} nodes, {args.seconds:g} s ...", flush=True)
        on_etcd = etcd_throughput(etcd, work / "load-etcd", args.submitters, args.nodes, args.seconds)
    print(f"load on SQLite: {args.submitters} submitters, {args.nodes} nodes, {args.seconds:g} s ...", flush=True)
    on_sqlite = sqlite_throughput(args.submitters, args.nodes, args.seconds)
    seconds = [r["failover_s"] for r in runs]
    earlier = json.loads((RESULTS / "ha.json").read_text()) if (RESULTS / "ha.json").exists() else {}
    figures = {
        "median_failover_s": round(statistics.median(seconds), 3),
        "runs": seconds,
        "max_failover_s": max(seconds),
        "lost": sum(r["lost"] for r in runs) + on_etcd["lost"],
        "double_running": sum(r["double_running"] for r in runs),
        "acked_during_failover": sum(r["acked"] for r in runs),
        "lease_ttl_s": args.lease_ttl,
        "etcd_accepted_per_s": on_etcd["accepted_per_s"],
        "sqlite_accepted_per_s": on_sqlite["accepted_per_s"],
        "etcd_submit_p99_ms": on_etcd["submit_p99_ms"],
        "sqlite_submit_p99_ms": on_sqlite["submit_p99_ms"],
        "etcd_heartbeat_p99_ms": on_etcd["heartbeat_p99_ms"],
        "sqlite_heartbeat_p99_ms": on_sqlite["heartbeat_p99_ms"],
        "load": {"submitters": args.submitters, "nodes": args.nodes, "seconds": args.seconds},
    }
    if "failover_by_lease_ttl" in earlier:  # the --failover-only runs stay beside the main figures
        figures["failover_by_lease_ttl"] = earlier["failover_by_lease_ttl"]
    path = write_results("ha", figures)
    print(table(["failover (kill -9 → first placement)", "median s", "max s", "lost", "double running"],
                [[f"{len(seconds)} runs", figures["median_failover_s"], figures["max_failover_s"], figures["lost"],
                  figures["double_running"]]]))
    print(table(["store", "accepted/s", "submit p99 ms", "heartbeat p99 ms", "lost"],
                [["SQLite (1 server)", on_sqlite["accepted_per_s"], on_sqlite["submit_p99_ms"],
                  on_sqlite["heartbeat_p99_ms"], on_sqlite["lost"]],
                 ["etcd (3 servers, 3 members)", on_etcd["accepted_per_s"], on_etcd["submit_p99_ms"],
                  on_etcd["heartbeat_p99_ms"], on_etcd["lost"]]]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
