"""Fill the README's benchmark section from bench/results/*.json (run after the benchmarks)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RES = ROOT / "bench" / "results"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def load(name: str) -> dict:
    return json.loads((RES / f"{name}.json").read_text())


def main() -> None:
    template = (ROOT / "bench" / "README_TEMPLATE.md").read_text()
    off, ovh, fo, img, obs, nab, to = (load(n) for n in (
        "offload", "overhead", "failover", "images", "observe_overhead", "nab_eval", "timeouts"))
    ol: dict[str, Any] = load("overload_lead")["thresholds"]["75"]
    low: dict[str, Any] = next((r for r in nab.get("static_sweep", []) if r["theta"] == 1.0), {})
    rows = []
    for profile, v in to.items():
        if not isinstance(v, dict) or "adaptive" not in v:
            continue
        for kind in ("adaptive", "fixed_1s", "fixed_5s"):
            f = v[kind]
            rows.append(f"| {profile} ({v.get('link', '')}) | {kind} | {f['spurious_timeouts']} | "
                        f"{f['detect_dead_s']:.2f} | {f['retries']} |")
    values = {
        "LOCAL_MS": f"{off['local_mean_ms']:.0f}", "LOCAL_CPU": f"{off['local_edge_cpu_pct']:.0f}",
        "OFF_MS": f"{off['offload_mean_ms']:.0f}", "OFF_CPU": f"{off['offload_edge_cpu_pct']:.0f}",
        "OFFLOADED": f"{off['offloaded']:.0f}", "RATIO": f"{off['ratio']:.2f}",
        "RATIO_MET": "met" if off["ratio"] <= 0.40 else "not met",
        "NAB_MET": "met" if nab["nab_standard_score"] >= 65 and nab["false_alarm_rate"] <= 0.13 else "not met",
        "SH_MS": f"{off['offload_shared_mean_ms']:.0f}", "SH_CPU": f"{off['offload_shared_edge_cpu_pct']:.0f}",
        "SH_RATIO": f"{off['shared_ratio']:.2f}", "OFF_ROUNDS": str(off["rounds"]),
        "RATIO_ROUNDS": ", ".join(f"{r:.2f}" for r in off["ratio_per_round"]),
        "OVH_U": f"{ovh['updraft_median_s']:.3f}", "OVH_D": f"{ovh['docker_median_s']:.3f}",
        "OVH_R": f"{ovh['ratio']:.2f}", "CLI_U": f"{ovh['updraft_cli_median_s']:.2f}",
        "CLI_D": f"{ovh['docker_cli_median_s']:.2f}", "CLI_R": f"{ovh['cli_ratio']:.2f}",
        "CLI_START": f"{ovh['cli_start_s']:.2f}", "RSS": f"{ovh['agent_idle_rss_mb']:.0f}",
        "FO_MED": f"{fo['median_failover_s']:.2f}", "FO_RUNS": str(fo["runs"]),
        "FO_MAX": f"{max(fo['failover_s']):.2f}",
        "FO_MIN": f"{fo['heartbeat_minutes']:.1f}", "FO_SUSP": str(fo["false_suspicions"]),
        "TIMEOUT_ROWS": "\n".join(rows),
        "IMG_C": f"{img['cached_s']:.2f}", "IMG_U": f"{img['uncached_s']:.2f}",
        "IMG_M": f"{img['multistage_mb']:.0f}", "IMG_S": f"{img['singlestage_mb']:.0f}",
        "TP_OFF": f"{obs['throughput_off']:.2f}", "TP_ON": f"{obs['throughput_on']:.2f}",
        "TP_R": f"{obs['throughput_ratio']:.2f}", "P99_OFF": f"{obs['p99_off_ms']:.0f}",
        "P99_ON": f"{obs['p99_on_ms']:.0f}", "SPAN_US": f"{obs.get('span_cpu_us_per_task_on', 0):.0f}",
        "CPU_MS": f"{obs.get('cpu_ms_per_task_off', 0):.0f}",
        "NAB_SCORE": f"{nab['nab_standard_score']:.2f}", "NAB_CV": f"{nab.get('threshold_cv_standard_score', 0):.1f}",
        "NAB_FA": f"{100 * nab['false_alarm_rate']:.1f} %", "NAB_WIN": str(nab["windows_detected"]),
        "NAB_STATIC": f"{nab['static_nab_standard_score']:.1f}",
        "NAB_STATIC_FA": f"{100 * nab['static_false_alarm_rate']:.1f} %",
        "NAB_STATIC_WIN": str(nab["static_windows_detected"]),
        "NAB_DELAY": f"{nab.get('mean_delay_common_s', 0):.0f}", "NAB_SDELAY": f"{nab.get('static_mean_delay_common_s', 0):.0f}",
        "NAB_US": f"{nab['us_per_sample']:.1f}",
        "OL_SUSTAINED": str(ol["episodes_gradual"] + ol["episodes_jump"]),
        "OL_JUMP": str(ol["episodes_jump"]), "OL_EARLIER": str(ol["predictive_earlier_pct"]),
        "OL_LATER": str(ol["predictive_later_pct"]), "OL_SPIKES": str(ol["spikes"]),
        "OL_SPIKES_HELD": str(ol["spikes"] - ol["predictive_spikes_acted"]),
        "NAB_LOW_EARLY": str(low.get("static_earlier")), "NAB_OUR_EARLY": str(low.get("updraft_earlier")),
        "NAB_LOW_FA": f"{100 * low.get('false_alarm_rate', 0):.0f} %",
    }
    text = re.sub("|".join(sorted(values, key=len, reverse=True)), lambda m: values[m.group(0)], template)
    readme = (ROOT / "README.md").read_text()
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    (ROOT / "README.md").write_text(f"{head}{START}\n{text}\n{END}{tail}")
    print("README benchmark section updated")


if __name__ == "__main__":
    main()
