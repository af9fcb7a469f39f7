"""The cost Updraft adds to running a container.

* **In process**: submit → result of a no-op container through the SDK (``Client.run``) against the Docker
  SDK's own run-and-wait of the same, already present, image (``containers.run(image, ["true"],
  remove=True)``: create, start, wait, logs, remove — what the agent has to do too), from one process,
  interleaved, ``RUNS`` each after a warm-up. Medians and their ratio (goal ≤ 1.15). The agent removes its
  containers after reporting, off the result's path, so a second baseline times the Docker SDK's create,
  start, wait and logs with the removal after the clock stops: the same work as the agent's result path.
* **Whole process**: ``updraft run IMAGE true`` against ``docker run --rm IMAGE true`` (interleaved), and
  the CLI's start time, ``updraft --help`` (goal ≤ 0.3 s).
* **Agent idle resident memory**: VmRSS of the agent process after ~10 s idle (goal ≤ 60 MB), measured
  before any task ran and again after all of them.

Real processes (``tests.cluster``): one server and one agent on this machine, the real Docker engine.
Prints a table and writes ``bench/results/overhead.json``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import ROOT, table, write_results

from tests.cluster import NOOP_IMAGE, Cluster, ensure_docker

RUNS = 30
WARMUP = 3
CLI_RUNS = 10
HELP_RUNS = 9
IDLE_S = 10.0
COMMAND = ["true"]


def updraft_cli() -> list[str]:
    """The installed ``updraft`` entry point (what a user runs), next to this interpreter."""
    exe = Path(sys.executable).with_name("updraft")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("updraft")
    return [found] if found else [sys.executable, "-m", "updraft.main"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


Case = Callable[[], "Callable[[], object] | None"]
"""One timed run; it may return a clean-up to run after the clock stops."""


def interleaved(cases: dict[str, Case], runs: int) -> dict[str, list[float]]:
    """Time every case ``runs`` times, interleaved, rotating which goes first."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for i in range(runs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            cleanup = cases[name]()
            times[name].append(time.perf_counter() - t0)
            if cleanup is not None:
                cleanup()
    return times


def run_process(args: list[str]) -> None:
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {out.returncode}: {out.stderr[-500:]}")


def main() -> None:
    import docker

    ensure_docker()
    dk = docker.from_env()
    dk.images.get(NOOP_IMAGE)  # present already (scripts/build-base-image.sh); nothing here pulls
    cli = updraft_cli()

    help_times = [timed(lambda: run_process([*cli, "--help"])) for _ in range(HELP_RUNS)]

    with Cluster() as cluster:
        cluster.start_server()
        agent = cluster.start_agent("edge")
        time.sleep(IDLE_S)
        idle_rss = rss_mb(agent.pid)

        with cluster.client() as c:

            def updraft_run() -> None:
                task = c.run(image=NOOP_IMAGE, command=COMMAND, origin="edge", timeout=60)
                if task.state != "succeeded":
                    raise RuntimeError(f"{task.id} {task.state}: {task.reason}")

            def docker_run() -> None:
                dk.containers.run(NOOP_IMAGE, COMMAND, remove=True)

            def docker_remove_after() -> Callable[[], object]:
                container = dk.containers.run(NOOP_IMAGE, COMMAND, detach=True)
                container.wait()
                container.logs()
                return lambda: container.remove(force=True)

            inproc: dict[str, Case] = {"updraft": updraft_run, "docker": docker_run, "keep": docker_remove_after}
            interleaved(inproc, WARMUP)
            times = interleaved(inproc, RUNS)
            ups, dks, keeps = times["updraft"], times["docker"], times["keep"]

        updraft_args = [*cli, "run", "--server", cluster.url, "--origin", "edge", NOOP_IMAGE, *COMMAND]
        docker_args = ["docker", "run", "--rm", NOOP_IMAGE, *COMMAND]
        whole: dict[str, Case] = {"updraft": lambda: run_process(updraft_args), "docker": lambda: run_process(docker_args)}
        interleaved(whole, 1)
        times = interleaved(whole, CLI_RUNS)
        cli_up, cli_dk = times["updraft"], times["docker"]

        time.sleep(IDLE_S)
        busy_rss = rss_mb(agent.pid)
        errors = sum(" ERROR " in line for line in agent.log_path.read_text(errors="replace").splitlines())

    up_med, dk_med, keep_med = statistics.median(ups), statistics.median(dks), statistics.median(keeps)
    cli_up_med, cli_dk_med = statistics.median(cli_up), statistics.median(cli_dk)
    help_med = statistics.median(help_times)
    figures = {
        "updraft_median_s": round(up_med, 4),
        "docker_median_s": round(dk_med, 4),
        "ratio": round(up_med / dk_med, 3),
        "docker_remove_after_median_s": round(keep_med, 4),
        "ratio_vs_remove_after": round(up_med / keep_med, 3),
        "updraft_cli_median_s": round(cli_up_med, 4),
        "docker_cli_median_s": round(cli_dk_med, 4),
        "cli_ratio": round(cli_up_med / cli_dk_med, 3),
        "cli_start_s": round(help_med, 4),
        "agent_idle_rss_mb": round(idle_rss, 1),
        "agent_idle_rss_after_runs_mb": round(busy_rss, 1),
        "agent_log_errors": errors,
        "runs": RUNS,
        "cli_runs": CLI_RUNS,
        "image": NOOP_IMAGE,
    }
    print(table(
        ["measure", "updraft", "docker", "ratio", "goal"],
        [
            ["submit → result, in process (median s)", f"{up_med:.4f}", f"{dk_med:.4f}",
             f"{up_med / dk_med:.3f}", "≤ 1.15"],
            ["  the same, Docker removing after the clock", f"{up_med:.4f}", f"{keep_med:.4f}",
             f"{up_med / keep_med:.3f}", ""],
            ["`run IMAGE true`, whole process (median s)", f"{cli_up_med:.4f}", f"{cli_dk_med:.4f}",
             f"{cli_up_med / cli_dk_med:.3f}", ""],
            ["`updraft --help` start (median s)", f"{help_med:.4f}", "", "", "≤ 0.3"],
            ["agent idle RSS (MB), fresh / after runs", f"{idle_rss:.1f} / {busy_rss:.1f}", "", "", "≤ 60"],
        ],
    ))
    print(f"in process, p10–p90: updraft {quantiles(ups)}, docker {quantiles(dks)}, "
          f"docker removing after {quantiles(keeps)}")
    if errors:
        print(f"warning: {errors} ERROR line(s) in the agent's log ({agent.log_path})")
    print(f"wrote {write_results('overhead', figures).relative_to(ROOT)}")


def quantiles(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=10)
    return f"{q[0]:.4f}–{q[-1]:.4f} s"


if __name__ == "__main__":
    main()
