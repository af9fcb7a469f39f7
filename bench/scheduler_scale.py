"""Scheduler at fleet scale: 10,000 pending tasks over 500, 5,000 and 15,000 synthetic nodes.

The cluster generator draws heterogeneous nodes (4–96 cores, 2–8 GiB per core, zones, arches, ``cores``
labels, some dedicated nodes tainted, 10 % accelerator nodes with 1–8 ``nvidia.com/gpu`` tainted
``nvidia.com/gpu=present:NoSchedule``) and tasks with a realistic mix of requests (mostly small, a few of
32–64 cores), some with selectors, node affinity (In, Gt, Exists), tolerations, and 1.2 % asking for GPUs.

Measured, in one process:

* the scheduler as it was before this work (``LEGACY_COMMIT``, run from git in a subprocess on a prefix of
  the queue, since it costs ~0.1 s per decision at 5,000 nodes), the baseline;
* the new scheduler, spread and binpack: one pass over all 10,000 tasks (index built in the pass), and batches
  of 1, 10 and 100 on a persistent :class:`NodeIndex` maintained as the control plane does (``add_usage`` per
  committed placement); placements/s and p50/p99 per-decision time;
* quality against a first-fit-decreasing baseline written here (tasks it places that the scheduler leaves
  unplaced: ``*_unplaced_that_first_fit_places`` for one pass, ``*_by_batch`` for the batched runs, where
  the repair after each pass sees only that batch), over-committed nodes (checked with the scalar filters; must be 0), GPU tasks on nodes without
  GPUs (must be 0; the legacy scheduler cannot see GPUs at all);
* the cost of sampling (kube-scheduler's adaptive percentageOfNodesToScore) against exhaustive scoring: time,
  and the score lost per decision (the exhaustive best at that moment minus the sampled choice).

Writes ``bench/results/scheduler_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LEGACY_COMMIT = "9b429bc"
SIZES = (500, 5000, 15000)
TASKS = 10_000
GPU = "nvidia.com/gpu"
GIB = 1 << 30
MIB = 1 << 20
LEGACY_PREFIX = {500: 400, 5000: 60, 15000: 20}


def clock() -> float:
    """CPU seconds of the scheduling thread: the machine is shared, and wall-clock rates would measure the
    neighbours (wall-clock seconds of each one-pass run are kept in the JSON as ``wall_s``)."""
    return time.thread_time()


# -- the synthetic cluster (plain data, so the legacy worker builds it with its own model) ------------------


def gen_nodes(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed * 1_000_003 + n)
    nodes = []
    for i in range(n):
        cores = rnd.choices([4, 8, 16, 32, 64, 96], weights=[15, 25, 25, 20, 10, 5])[0]
        mem_per_core = rnd.choice([2, 4, 4, 8])
        labels = {"zone": f"z{rnd.randrange(5)}", "arch": rnd.choice(["amd64"] * 4 + ["arm64"]), "cores": str(cores)}
        if rnd.random() < 0.4:
            labels["disk"] = "ssd"
        taints, extended = [], {}
        if rnd.random() < 0.10:
            extended[GPU] = rnd.choice([1, 2, 4, 8])
            labels["gpu-model"] = rnd.choice(["V100M16", "V100M32", "T4", "A100"])
            taints.append(f"{GPU}=present:NoSchedule")
        elif rnd.random() < 0.05:
            taints.append("dedicated=infra:NoSchedule")
        nodes.append({
            "name": f"node-{i:05d}",
            "capacity": {"cpu_millis": cores * 1000, "memory_bytes": cores * mem_per_core * GIB, "extended": extended},
            "labels": labels,
            "tags": [rnd.choice(["edge", "low-util", "cloud"])],
            "taints": taints,
            "metrics": {"cpu_pct": rnd.uniform(0, 60), "memory_pct": rnd.uniform(0, 60)},
            "images": ["app:v1"] if rnd.random() < 0.3 else [],
        })
    return nodes


def gen_tasks(n: int, scale: float, seed: int = 11) -> list[dict[str, Any]]:
    """The same 10,000 tasks for every fleet size; at 500 nodes they ask for about 80 % of the cpu and GPUs
    the nodes they may use offer, so placement quality decides who fits."""
    rnd = random.Random(seed)
    tasks = []
    for i in range(n):
        if rnd.random() < 0.002:
            cpu = rnd.choice([32000, 48000, 64000])
        else:
            cpu = int(rnd.choice([100, 200, 250, 500, 500, 1000, 1000, 2000, 3000]) * scale)
        spec: dict[str, Any] = {
            "image": rnd.choice(["app:v1", "app:v2", "busybox:1.36"]),
            "resources": {"requests": {"cpu": f"{max(cpu, 10)}m", "memory": f"{rnd.choice([128, 256, 512, 1024, 2048, 4096])}Mi"}},
            "priority": rnd.choice([0] * 9 + [10]),
        }
        if rnd.random() < 0.012:
            spec["resources"]["requests"][GPU] = rnd.choice([1, 1, 2])
            spec["tolerations"] = [{"key": GPU, "operator": "Exists"}]
            if rnd.random() < 0.3:
                spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "gpu-model", "operator": "In", "values": ["V100M16", "V100M32", "A100"]}]}]}}}
        elif rnd.random() < 0.15:
            spec["node_selector"] = {"zone": f"z{rnd.randrange(5)}"}
        elif rnd.random() < 0.15:
            spec["affinity"] = {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "cores", "operator": "Gt", "values": ["8"]}, {"key": "arch", "operator": "In", "values": ["amd64"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}
        if rnd.random() < 0.05:
            spec.setdefault("tolerations", []).append({"key": "dedicated", "operator": "Equal", "value": "infra"})
        tasks.append({"id": f"t{i:05d}", "seq": i, "spec": spec})
    return tasks


def build(nodes: list[dict[str, Any]], tasks: list[dict[str, Any]], legacy: bool) -> tuple[list[Any], list[Any]]:
    from updraft.model import Capacity, Node, NodeMetrics, Taint, Task, TaskSpec

    built_nodes = []
    for d in nodes:
        cap = dict(d["capacity"])
        if legacy:
            cap.pop("extended")
        built_nodes.append(Node(name=d["name"], capacity=Capacity(**cap), labels=d["labels"], tags=d["tags"],
                                taints=[Taint.parse(t) for t in d["taints"]], metrics=NodeMetrics(**d["metrics"]),
                                images=d["images"]))
    built_tasks = []
    for d in tasks:
        spec = json.loads(json.dumps(d["spec"]))
        if legacy:  # the old model has no extended resources and no affinity: it cannot express them
            spec["resources"]["requests"].pop(GPU, None)
            spec.pop("affinity", None)
        built_tasks.append(Task(id=d["id"], spec=TaskSpec(**spec), submitted_seq=d["seq"]))
    return built_nodes, built_tasks


def task_scale() -> float:
    return 1.0


# -- the legacy scheduler, from git, in a subprocess ---------------------------------------------------------


def legacy_worker(size: int, prefix: int, gpu_only: bool) -> None:
    """Runs with the legacy source tree first on sys.path: ``updraft`` is the old package."""
    from updraft.scheduler import Policy, Snapshot, queue_order, schedule

    raw = gen_tasks(TASKS, task_scale())
    if gpu_only:
        raw = [t for t in raw if GPU in t["spec"]["resources"]["requests"]]
    nodes, tasks = build(gen_nodes(size), raw, legacy=True)
    queue = queue_order(tasks)[:prefix]
    snap = Snapshot(nodes={n.name: n for n in nodes}, pending=queue, usage={})
    t0 = clock()
    plan = schedule(snap, Policy(), 1e6)
    elapsed = clock() - t0
    print(json.dumps({"decisions": len(queue), "placed": len(plan.placements), "seconds": elapsed,
                      "placements": [[p.task_id, p.node] for p in plan.placements]}))


def run_legacy(size: int, prefix: int, gpu_only: bool = False) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(root), "archive", LEGACY_COMMIT, "src/updraft"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {**os.environ, "UPDRAFT_BENCH_LEGACY": str(Path(tmp) / "src")}
        argv = [sys.executable, __file__, "--legacy-worker", str(size), str(prefix), "gpu" if gpu_only else "all"]
        out = subprocess.run(argv, env=env,
                             check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- the new scheduler ---------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def run_new(nodes: list[Any], tasks: list[Any], policy: Any, batch: int | None) -> dict[str, Any]:
    """One pass (batch None) or batches of ``batch`` on a persistent index; returns placements and timings."""
    from updraft.scheduler import NodeIndex, Snapshot, queue_order, schedule

    by_id = {t.id: t for t in tasks}
    placed: dict[str, str] = {}
    per_decision: list[float] = []
    if batch is None:
        t0, w0 = clock(), time.perf_counter()
        plan = schedule(Snapshot(nodes={n.name: n for n in nodes}, pending=tasks, usage={}), policy, 1e6)
        elapsed, wall = clock() - t0, time.perf_counter() - w0
        placed = {p.task_id: p.node for p in plan.placements}
        return {"placed": placed, "seconds": elapsed, "wall_s": wall, "p50_us": 1e6 * elapsed / len(tasks),
                "p99_us": None}
    index = NodeIndex(nodes)
    queue = queue_order(tasks)
    elapsed = 0.0
    for i in range(0, len(queue), batch):
        chunk = queue[i : i + batch]
        t0 = clock()
        plan = schedule(Snapshot(nodes={}, pending=chunk, usage={}, index=index), policy, 1e6)
        dt = clock() - t0
        elapsed += dt
        per_decision.append(dt / len(chunk))
        for p in plan.placements:  # what the control plane reports once the applier committed them
            index.add_usage(p.node, by_id[p.task_id].spec)
            placed[p.task_id] = p.node
    return {"placed": placed, "seconds": elapsed, "p50_us": 1e6 * pct(per_decision, 0.5),
            "p99_us": 1e6 * pct(per_decision, 0.99)}


def first_fit_decreasing(nodes: list[Any], tasks: list[Any]) -> dict[str, str]:
    """Tasks by size (cpu, then memory) decreasing, each on the first node (by name) that passes every hard
    constraint and has room. Constraint masks come from a NodeIndex; capacity is tracked here."""
    import numpy as np

    from updraft.scheduler import Demand, NodeIndex

    index = NodeIndex(nodes)
    order = sorted(range(len(nodes)), key=lambda i: nodes[i].name)
    rows = np.array([index.row(nodes[i].name) for i in order])
    free_cpu = np.array([nodes[i].capacity.cpu_millis for i in order], np.int64)
    free_mem = np.array([nodes[i].capacity.memory_bytes for i in order], np.int64)
    free_gpu = np.array([nodes[i].capacity.extended.get(GPU, 0) for i in order], np.int64)
    placed = {}
    for t in sorted(tasks, key=lambda t: (-t.spec.resources.request_cpu(), -t.spec.resources.request_memory())):
        d = Demand.of(t.spec)
        gpu = dict(d.extended).get(GPU, 0)
        admit = index.static(t.spec)[0][rows]
        ok = admit & (free_cpu >= d.cpu) & (free_mem >= d.memory) & (free_gpu >= gpu)
        if ok.any():
            j = int(np.argmax(ok))
            free_cpu[j] -= d.cpu
            free_mem[j] -= d.memory
            free_gpu[j] -= gpu
            placed[t.id] = nodes[order[j]].name
    return placed


def overcommitted(nodes: list[Any], tasks: list[Any], placed: dict[str, str]) -> int:
    from updraft.scheduler import Usage

    by_name, by_id = {n.name: n for n in nodes}, {t.id: t for t in tasks}
    usage: dict[str, Usage] = {}
    for tid, node in placed.items():
        usage[node] = usage.get(node, Usage()).plus(by_id[tid].spec)
    bad = 0
    for name, u in usage.items():
        cap = by_name[name].capacity
        if u.cpu_millis > cap.cpu_millis or u.memory_bytes > cap.memory_bytes or any(
            n > cap.extended.get(k, 0) for k, n in u.extended.items()
        ):
            bad += 1
    return bad


def gpu_on_nodes_without(nodes: list[Any], tasks: list[Any], placed: dict[str, str]) -> int:
    by_name = {n.name: n for n in nodes}
    wants = {t.id for t in tasks if GPU in t.spec.resources.request_extended()}
    return sum(1 for tid, node in placed.items() if tid in wants and not by_name[node].capacity.extended.get(GPU))


def sampling_regret(nodes: list[Any], tasks: list[Any], policy: Any, count: int) -> dict[str, float]:
    """Decisions one at a time on one index: the exhaustive best score at that moment vs the sampled choice."""
    from updraft.scheduler import NodeIndex, Snapshot, queue_order, schedule

    exhaustive = policy.model_copy(update={"percentage_of_nodes_to_score": 100})
    index = NodeIndex(nodes)
    lost, worse, n = [], 0, 0
    for t in queue_order(tasks)[:count]:
        snap = Snapshot(nodes={}, pending=[t], usage={}, index=index)
        best = schedule(snap, exhaustive, 1e6).placements
        chosen = schedule(snap, policy, 1e6).placements
        if best and chosen:
            gap = best[0].score - chosen[0].score
            lost.append(gap)
            worse += gap > 1e-9
            n += 1
            index.add_usage(chosen[0].node, t.spec)
    return {"decisions": n, "mean_score_lost": statistics.fmean(lost) if lost else 0.0,
            "max_score_lost": max(lost) if lost else 0.0, "share_worse": worse / n if n else 0.0}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--legacy-worker":
        sys.path.insert(0, os.environ["UPDRAFT_BENCH_LEGACY"])
        legacy_worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "gpu")
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--no-legacy", action="store_true")
    args = parser.parse_args()
    from _common import table, write_results

    from updraft.scheduler import NodeIndex, Policy

    sizes = [int(s) for s in args.sizes.split(",")]
    spread, binpack = Policy(), Policy(scoring="binpack")
    rows: list[list[Any]] = []
    out: dict[str, Any] = {"tasks": args.tasks, "legacy_commit": LEGACY_COMMIT, "placements_per_s": {},
                           "binpack_placements_per_s": {}, "legacy_placements_per_s": {}, "runs": [],
                           "quality": {}, "sampling": {}}
    unplaced_ffd = binpack_unplaced_ffd = over = gpu_wrong = 0
    for size in sizes:
        raw_nodes, raw_tasks = gen_nodes(size), gen_tasks(args.tasks, task_scale())
        nodes, tasks = build(raw_nodes, raw_tasks, legacy=False)
        ffd = first_fit_decreasing(nodes, tasks)
        if not args.no_legacy:
            leg = run_legacy(size, LEGACY_PREFIX.get(size, 50))
            rate = leg["placed"] / leg["seconds"]
            out["legacy_placements_per_s"][str(size)] = rate
            wants_gpu = {t.id for t in tasks if GPU in t.spec.resources.request_extended()}
            no_gpu = {n.name for n in nodes if not n.capacity.extended.get(GPU)}
            leg_gpu = sum(1 for tid, node in leg["placements"] if tid in wants_gpu and node in no_gpu)
            rows.append([size, "legacy (before)", f"1 pass, first {leg['decisions']}", f"{rate:,.1f}",
                         f"{1e3 * leg['seconds'] / leg['decisions']:.1f} ms (mean)", "-", "-", "-",
                         f"{leg_gpu}/{sum(1 for tid, _ in leg['placements'] if tid in wants_gpu)}"])
            out["runs"].append({"nodes": size, "scheduler": "legacy", "batch": "pass", "decisions": leg["decisions"],
                                "placements_per_s": rate, "gpu_tasks_on_nodes_without": leg_gpu})
            if size == min(sizes):  # the old model cannot see GPUs: where do the GPU tasks land?
                leg = run_legacy(size, len(wants_gpu), gpu_only=True)
                leg_gpu = sum(1 for tid, node in leg["placements"] if node in no_gpu)
                out["legacy_gpu_tasks_on_nodes_without"] = {"placed": leg["placed"], "on_nodes_without": leg_gpu}
                rows.append([size, "legacy (before)", f"GPU tasks only ({leg['decisions']})", "-", "-", "-",
                             leg["placed"], "-", f"{leg_gpu}/{leg['placed']}"])
        for name, policy in (("spread", spread), ("binpack", binpack)):
            for batch in (None, 1, 10, 100):
                r = run_new(nodes, tasks, policy, batch)
                placed = r["placed"]
                rate = len(placed) / r["seconds"]
                missed = sum(1 for tid in ffd if tid not in placed)
                oc, gw = overcommitted(nodes, tasks, placed), gpu_on_nodes_without(nodes, tasks, placed)
                over += oc
                gpu_wrong += gw
                label = "1 pass" if batch is None else f"batches of {batch}"
                if batch is not None:  # tasks arriving a few at a time: the repair sees only its own batch
                    by_batch = out.setdefault(f"{name}_unplaced_that_first_fit_places_by_batch", {})
                    by_batch[str(batch)] = by_batch.get(str(batch), 0) + missed
                if batch is None:
                    (out["placements_per_s"] if name == "spread" else out["binpack_placements_per_s"])[str(size)] = rate
                    if name == "spread":
                        unplaced_ffd += missed
                    else:
                        binpack_unplaced_ffd += missed
                    out["quality"].setdefault(str(size), {})[name] = {
                        "placed": len(placed), "first_fit_placed": len(ffd), "unplaced_that_first_fit_places": missed}
                p99 = "-" if r["p99_us"] is None else f"{r['p99_us']:.0f} µs"
                p50 = f"{r['p50_us']:.0f} µs" + (" (mean)" if batch is None else "")
                rows.append([size, name, label, f"{rate:,.0f}", p50, p99,
                             f"{len(placed)} (FFD {len(ffd)})", missed, gw])
                out["runs"].append({"nodes": size, "scheduler": name, "batch": batch or "pass", "placed": len(placed),
                                    "placements_per_s": rate, "cpu_s": r["seconds"], "wall_s": r.get("wall_s"), "p50_us": r["p50_us"], "p99_us": r["p99_us"],
                                    "unplaced_that_first_fit_places": missed, "overcommitted_nodes": oc,
                                    "accelerator_tasks_on_nodes_without": gw})
                print(f"  {size} {name} {label}: {rate:,.0f}/s", file=sys.stderr, flush=True)
        t0 = clock()
        index = NodeIndex()
        index.refresh({n.name: n for n in nodes}, {})
        built = clock() - t0
        t0 = clock()
        index.refresh({n.name: n for n in nodes}, {})
        out.setdefault("index", {})[str(size)] = {"build_ms": 1e3 * built, "refresh_unchanged_ms": 1e3 * (clock() - t0)}
        exhaustive = spread.model_copy(update={"percentage_of_nodes_to_score": 100})
        r = run_new(nodes, tasks, exhaustive, None)
        regret = sampling_regret(nodes, tasks, spread, 1000)
        out["sampling"][str(size)] = {
            "scored_per_decision": spread.nodes_to_score(size, size),
            "exhaustive_placements_per_s": len(r["placed"]) / r["seconds"],
            "exhaustive_unplaced_that_first_fit_places": sum(1 for tid in ffd if tid not in r["placed"]),
            **regret,
        }
    out["unplaced_that_first_fit_places"] = unplaced_ffd
    out["binpack_unplaced_that_first_fit_places"] = binpack_unplaced_ffd
    out["overcommitted_nodes"] = over
    out["accelerator_tasks_on_nodes_without"] = gpu_wrong
    print(table(["nodes", "scheduler", "mode", "placements/s", "p50/decision", "p99/decision", "placed",
                 "FFD places, not it", "GPU tasks on no-GPU nodes"], rows))
    print()
    print(table(["nodes", "nodes scored (adaptive)", "exhaustive placements/s", "sampled placements/s",
                 "mean score lost", "decisions worse"],
                [[s, v["scored_per_decision"], f"{v['exhaustive_placements_per_s']:,.0f}",
                  f"{out['placements_per_s'][s]:,.0f}", f"{v['mean_score_lost']:.4f}", f"{100 * v['share_worse']:.1f} %"]
                 for s, v in out["sampling"].items()]))
    print(f"\nover-committed nodes: {over}; GPU tasks on nodes without GPUs: {gpu_wrong}")
    print("index: " + "; ".join(f"{k} nodes built in {v['build_ms']:.0f} ms, refreshed unchanged in "
                                f"{v['refresh_unchanged_ms']:.1f} ms" for k, v in out["index"].items()))
    print("wrote", write_results("scheduler_scale", out))


if __name__ == "__main__":
    main()
