"""The agent's state machine, driven by events with a fake clock: no threads, no Docker, no server."""

from __future__ import annotations

from agent_harness import Harness, assignment, container, of, statuses

from updraft.agent import events as ev
from updraft.agent.hardening import Policy
from updraft.agent.state import Config
from updraft.model.spec import Probe


def test_boot_lists_containers_registers_then_heartbeats_and_polls() -> None:
    h = Harness()
    assert h.send(ev.Tick()) == []  # nothing before the outbox is read
    first = h.send(ev.Booted())
    assert of(first, ev.ListContainers) and of(first, ev.Register)
    assert not of(h.send(ev.RegisterAnswered(ok=True)), ev.Poll)  # never poll before adoption
    after = h.send(ev.ContainersListed(()))
    assert of(after, ev.Poll) == [ev.Poll(None)]
    assert of(h.tick(0.5), ev.SendHeartbeat) == []  # one heartbeat in flight at a time
    h.send(ev.HeartbeatAnswered(h.clock.monotonic() - 0.5))
    assert of(h.tick(0.49), ev.SendHeartbeat) == []
    assert of(h.tick(0.02), ev.SendHeartbeat) == [ev.SendHeartbeat(())]


def test_an_assignment_is_pulled_started_followed_and_reported() -> None:
    h = Harness()
    h.boot()
    a = assignment("t1", 3)
    assert of(h.assign(a), ev.Pull) == [ev.Pull(("t1", 3), a.spec.image, None)]
    created = of(h.send(ev.ImagePulled(("t1", 3), "sha256:i", None)), ev.Create)
    assert len(created) == 1
    req = created[0].request
    assert req.name == "updraft-t1-3" and req.labels["updraft.task"] == "t1" and req.labels["updraft.token"] == "3"
    assert req.env["UPDRAFT_TOKEN"] == "3" and req.cpu_shares == 1024  # alone: the whole cpu's weight
    started = h.started(("t1", 3), "c1")
    assert of(started, ev.Wait) == [ev.Wait(("t1", 3), "c1", 0)]
    assert len(of(started, ev.FollowLogs)) == 1
    assert statuses(started) == [{"state": "running", "container_id": "c1", "started_at": h.clock.now(),
                                  "image_digest": None}]
    h.send(ev.LogsRead(("t1", 3), (("stdout", 1.0, "hello"),)))
    exited = h.exited(("t1", 3), "c1", code=3)
    assert statuses(exited) == []  # the last lines are still being read
    stream = of(started, ev.FollowLogs)[0].stream_id
    done = h.send(ev.LogsEnded(("t1", 3), stream))
    [report] = statuses(done)
    assert report["state"] == "exited" and report["exit_code"] == 3 and report["log_tail"] == "hello"
    assert of(done, ev.Remove) == [ev.Remove(("t1", 3), "c1")]
    assert not of(h.assign(a, index=2), ev.Pull)  # finished: never started again
    h.send(ev.Removed(("t1", 3)))
    assert not of(h.assign(a, index=3), ev.Pull)


def test_the_result_goes_even_if_the_log_stream_never_ends() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1"), "c1")
    h.exited(("t1", 1), "c1")
    assert statuses(h.tick(1.9)) == []
    assert [s["state"] for s in statuses(h.tick(0.2))] == ["exited"]


def test_a_restarted_agent_adopts_its_container_and_keeps_it() -> None:
    """Same container, same attempt: no pull, no create, the exit of that container is the result."""
    h = Harness()
    c = container("t1", 4, started_at=h.clock.now() - 30, cpu_shares=102, request_millis=100)
    out = h.boot(containers=(c,))
    assert of(out, ev.Wait) == [ev.Wait(("t1", 4), c.container_id, 0)]
    assert of(out, ev.FollowLogs)[0].since == h.clock.now()  # only what it says from now on
    assert statuses(out)[0]["state"] == "running"
    assert of(out, ev.SetCpuWeight) == [ev.SetCpuWeight(c.container_id, 1024)]  # alone again: all the spare
    later = h.assign(assignment("t1", 4))
    assert not of(later, ev.Pull) and not of(later, ev.Create) and not of(later, ev.Stop)
    assert h.m.attempts[("t1", 4)].container_id == c.container_id
    h.exited(("t1", 4), c.container_id, code=0)
    [report] = statuses(h.tick(3))
    assert report["container_id"] == c.container_id and report["exit_code"] == 0


def test_a_container_that_exited_while_the_agent_was_down_is_reported_once() -> None:
    h = Harness()
    gone = container("t1", 2, running=False, exit_code=7)
    out = h.boot(containers=(gone,))
    assert [s["exit_code"] for s in statuses(out)] == [7] and of(out, ev.Remove)
    h2 = Harness()  # its result was already queued before the restart: only removed
    out2 = h2.boot(containers=(gone,), finished=frozenset({("t1", 2)}))
    assert statuses(out2) == [] and of(out2, ev.Remove)


def test_fencing_stops_the_stale_copy_and_forgets_what_it_queued() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1", 1), "c1")
    out = h.send(ev.HeartbeatAnswered(h.clock.monotonic(), stale=(("t1", 1),)))
    assert of(out, ev.Stop) == [ev.Stop(("t1", 1), "c1", 0.0, "the control plane replaced this attempt")]
    assert of(out, ev.Forget) == [ev.Forget(("t1", 1))]
    assert all(x.key != ("t1", 1) for x in h.m.outbox)
    assert statuses(h.exited(("t1", 1), "c1", code=137) + h.tick(3)) == []  # a fenced copy reports nothing
    assert not of(h.assign(assignment("t1", 1)), ev.Pull)  # and is never started again


def test_a_409_on_a_report_fences_that_container() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1", 1), "c1")
    [deliver] = [i for i in h.out if isinstance(i, ev.Deliver)]
    out = h.send(ev.Delivered(tuple(x.seq for x in deliver.entries), ev.Outcome.STALE))
    assert of(out, ev.Stop) == [ev.Stop(("t1", 1), "c1", 0.0, "the control plane answered 409: stale token")]


def test_a_superseded_attempt_is_stopped_and_the_new_one_started() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1", 1), "c1")
    out = h.assign(assignment("t1", 2), index=2)
    assert of(out, ev.Stop) == [ev.Stop(("t1", 1), "c1", 1.0, "no longer assigned to this node")]
    assert of(out, ev.Pull)[0].key == ("t1", 2)
    assert [s["exit_code"] for s in statuses(h.exited(("t1", 1), "c1", 137) + h.tick(3))] == [137]


def test_cut_off_with_stop_after_self_fences_once_and_only_after_stop_after() -> None:
    h = Harness(Config(node="n1", heartbeat_interval=1.0))
    h.boot()
    h.send(ev.HeartbeatAnswered(h.clock.monotonic()))
    h.run(assignment("t1", on_disconnect="stop", stop_after=3.0), "c1")
    h.run(assignment("t2"), "c2")  # keep: edge autonomy, runs on
    h.send(ev.HeartbeatFailed(transport=True))
    h.tick(2.0)
    assert not h.m.cut_off
    assert not of(h.tick(0.1), ev.Stop) and h.m.cut_off
    assert not of(h.tick(0.8), ev.Stop)  # 2.9 s silent
    stops = of(h.tick(0.1), ev.Stop)
    assert [(s.container_id, s.grace) for s in stops] == [("c1", 0.0)]
    assert not of(h.tick(60), ev.Stop)  # once; t2 never
    h.send(ev.HeartbeatAnswered(h.clock.monotonic()))
    assert not h.m.cut_off


def test_timeouts_stop_the_container_and_report_124() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1", timeout=5.0), "c1")
    assert not of(h.tick(4.9), ev.Stop)
    assert of(h.tick(0.1), ev.Stop) == [ev.Stop(("t1", 1), "c1", 1.0, "timed out")]
    [report] = statuses(h.exited(("t1", 1), "c1", code=0) + h.tick(3), ("t1", 1))[-1:]
    assert report["exit_code"] == 124 and report["error"] == "timed out after 5 s"


def test_an_adopted_container_times_out_from_its_own_start() -> None:
    h = Harness()
    h.boot(containers=(container("t1", started_at=h.clock.now() - 8),))
    h.assign(assignment("t1", timeout=10.0))
    assert not of(h.tick(1.9), ev.Stop)
    assert of(h.tick(0.1), ev.Stop)[0].reason == "timed out"


def test_a_failing_liveness_probe_restarts_the_container_in_place() -> None:
    h = Harness()
    h.boot()
    live = Probe(kind="exec", command=["check"], period_seconds=1, failure_threshold=2)
    ready = Probe(kind="exec", command=["ready"], period_seconds=1)
    a = assignment("t1", liveness_probe=live, readiness_probe=ready)
    out = h.run(a, "c1")
    assert {p.probe for p in of(out, ev.RunProbe)} == {"liveness", "readiness"}
    key = ("t1", 1)
    persisted = h.send(ev.ProbeChecked(key, 0, "readiness", True, "exit code 0"))
    assert [p.entry.body["ready"] for p in of(persisted, ev.Persist)] == [True]
    h.send(ev.ProbeChecked(key, 0, "liveness", False, "exit code 1"))
    assert not of(h.tick(0.5), ev.RunProbe)  # the next check waits its period
    assert [p.probe for p in of(h.tick(0.5), ev.RunProbe)] == ["liveness", "readiness"]
    out = h.send(ev.ProbeChecked(key, 0, "liveness", False, "exit code 1"))
    assert of(out, ev.Restart) == [ev.Restart(key, "c1", "liveness probe failed 2 times: exit code 1")]
    body = of(out, ev.Persist)[0].entry.body
    assert body == {"ready": False, "restarts": 1, "message": "restarted: liveness probe failed 2 times: exit code 1"}
    assert statuses(h.exited(key, "c1", code=137, generation=0)) == []  # the restart's stop is not the end
    out = h.send(ev.Restarted(key, ok=True))
    assert of(out, ev.Wait) == [ev.Wait(key, "c1", 1)] and of(out, ev.FollowLogs)
    assert statuses(h.exited(key, "c1", code=0, generation=1) + h.tick(3))[-1]["exit_code"] == 0


def test_outbox_entries_are_delivered_one_request_at_a_time_in_order() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1"), "c1")
    for n in range(3):
        h.send(ev.LogsRead(("t1", 1), (("stdout", float(n), f"line {n}"),)))
    h.exited(("t1", 1), "c1")
    h.tick(3)
    delivers = of(h.out, ev.Deliver)
    assert len(delivers) == 1  # the first (running) is in flight; nothing else goes meanwhile
    first = delivers[0].entries
    out = h.send(ev.Delivered(tuple(x.seq for x in first), ev.Outcome.TRANSPORT))
    assert not of(out, ev.Deliver) and not of(h.tick(0.1), ev.Deliver)
    [retry] = of(h.tick(0.1), ev.Deliver)
    assert retry.entries == first  # the same, again, before anything newer
    h.out.clear()
    h.send(ev.Delivered(tuple(x.seq for x in retry.entries), ev.Outcome.OK))
    requests = [d.entries for d in of(h.out, ev.Deliver)]
    sent = h.deliver_all()
    requests += [d.entries for d in of(h.out, ev.Deliver)]
    assert [x.kind for x in sent] == ["log", "log", "log", "status"]
    assert [len(r) for r in requests][:1] == [3]  # consecutive log lines of one attempt: one request
    assert [ln["data"] for x in sent[:3] for ln in x.body["lines"]] == ["line 0", "line 1", "line 2"]
    assert sent[3].body["state"] == "exited" and h.m.outbox == []


def test_restored_entries_go_first_and_new_ones_after() -> None:
    old = ev.Entry(41, ev.EntryKind.STATUS, ("t0", 1), {"state": "exited", "exit_code": 0})
    h = Harness()
    h.boot(entries=(old,))
    h.run(assignment("t1"), "c1")
    sent = h.deliver_all()
    assert sent[0] == old and sent[1].seq > 41


def test_the_spare_cpu_goes_to_the_oldest_and_passes_on_when_it_exits() -> None:
    h = Harness(Config(node="n1", cpu_millis=1000))
    h.boot()
    h.run(assignment("a", cpu="100m"), "ca")
    h.clock.advance(1)
    h.assign(assignment("a", cpu="100m"), assignment("b", cpu="100m"), index=2)
    create = of(h.send(ev.ImagePulled(("b", 1), "i", None)), ev.Create)[0]
    assert create.request.cpu_shares == 102  # created with the weight it will have
    started = h.started(("b", 1), "cb")
    assert of(started, ev.SetCpuWeight) == [ev.SetCpuWeight("ca", 1024 - 102)]
    ended = h.exited(("a", 1), "ca")
    assert of(ended, ev.SetCpuWeight) == [ev.SetCpuWeight("cb", 1024)]  # at the exit, before the report
    assert statuses(ended) == []


def test_a_failed_weight_update_is_made_again_on_the_next_change() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("a"), "ca")
    h.clock.advance(1)
    h.assign(assignment("a"), assignment("b"), index=2)
    h.send(ev.ImagePulled(("b", 1), "i", None))
    h.started(("b", 1), "cb")
    h.send(ev.CpuWeightFailed("ca"))
    h.clock.advance(1)
    h.assign(assignment("a"), assignment("b"), assignment("c"), index=3)
    h.send(ev.ImagePulled(("c", 1), "i", None))
    assert ev.SetCpuWeight("ca", 1024 - 2 * 102) in h.started(("c", 1), "cc")


def test_one_start_per_cpu_at_a_time_in_assignment_order() -> None:
    h = Harness(Config(node="n1", cpu_millis=1000))
    h.boot()
    a, b, c = assignment("a"), assignment("b"), assignment("c")
    h.assign(a, b, c)
    assert [x.key for x in of(h.send(ev.ImagePulled(("c", 1), "i", None)), ev.Create)] == [("c", 1)]  # first pulled
    h.send(ev.ImagePulled(("b", 1), "i", None))
    h.send(ev.ImagePulled(("a", 1), "i", None))
    assert [x.key for x in of(h.out, ev.Create)] == [("c", 1)]
    nxt = of(h.started(("c", 1), "cc"), ev.Create)
    assert [x.key for x in nxt] == [("a", 1)]  # then in assignment order
    assert [x.key for x in of(h.send(ev.StartFailed(("a", 1), "boom")), ev.Create)] == [("b", 1)]
    two = Harness(Config(node="n1", cpu_millis=2000))
    two.boot()
    two.assign(a, b, c)
    for k in ("a", "b", "c"):
        two.send(ev.ImagePulled((k, 1), "i", None))
    assert len(of(two.out, ev.Create)) == 2


def test_a_refused_task_fails_with_the_rule_that_refused_it() -> None:
    h = Harness()
    h.boot()
    out = h.assign(assignment("t1", volumes=["/:/host"]))
    assert not of(out, ev.Pull)
    [report] = statuses(out)
    assert report["state"] == "error" and "(engine_socket)" in report["error"]
    out = h.assign(assignment("t2", volumes=["/srv/data:/data"]), index=2)
    assert "(host_path_not_allowed)" in statuses(out)[0]["error"]


def test_refuse_root_checks_the_image_user_once_pulled() -> None:
    h = Harness(Config(node="n1", hardening=Policy(refuse_root=True)))
    h.boot()
    h.assign(assignment("t1"), assignment("t2", user="1000"))
    out = h.send(ev.ImagePulled(("t1", 1), "i", ""), ev.ImagePulled(("t2", 1), "i", ""))
    assert "(root_refused)" in statuses(out, ("t1", 1))[0]["error"]
    assert [c.request.hardening.user for c in of(out, ev.Create)] == ["1000"]


def test_a_container_lost_with_the_engine_is_found_again_by_listing() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1"), "c1")
    h.run(assignment("t2"), "c2")
    h.send(ev.ContainerLost(("t1", 1), "docker went away"), ev.ContainerLost(("t2", 1), "docker went away"))
    assert not of(h.tick(0.5), ev.ListContainers)
    assert of(h.tick(0.6), ev.ListContainers)
    out = h.send(ev.ContainersListed((container("t1", container_id="c1"),)))
    assert of(out, ev.Wait) == [ev.Wait(("t1", 1), "c1", 1)]
    assert "disappeared" in statuses(out, ("t2", 1))[0]["error"]


def test_unassigned_containers_are_stopped_and_their_exit_still_reported() -> None:
    h = Harness()
    h.boot()
    h.run(assignment("t1"), "c1")
    assert of(h.assign(index=2), ev.Stop) == [ev.Stop(("t1", 1), "c1", 1.0, "no longer assigned to this node")]
    assert not of(h.assign(index=3), ev.Stop)  # once
    assert [s["exit_code"] for s in statuses(h.exited(("t1", 1), "c1", 137) + h.tick(3))] == [137]


def test_each_container_gets_its_own_gpus_and_a_third_waits_for_a_release() -> None:
    h = Harness(Config(node="n1", cpu_millis=4000, devices={"nvidia.com/gpu": ("0", "1")}))
    h.boot()
    gpu = {"resources": {"requests": {"cpu": "100m", "nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}}
    tasks = [assignment(name, **gpu) for name in ("a", "b", "c")]
    h.assign(*tasks)
    for name in ("a", "b", "c"):
        h.send(ev.ImagePulled((name, 1), "i", None))
    creates = {c.key[0]: c.request for c in of(h.out, ev.Create)}
    assert set(creates) == {"a", "b"}  # c waits: both GPUs are taken
    ids = [r.device_requests[0]["DeviceIDs"] for r in (creates["a"], creates["b"])]
    assert ids == [["0"], ["1"]] and creates["a"].labels["updraft.devices"] == "nvidia.com/gpu=0"
    h.started(("a", 1), "ca")
    h.out.clear()
    h.exited(("a", 1), "ca")
    h.tick(3)
    [third] = of(h.out, ev.Create)
    assert third.key == ("c", 1) and third.request.device_requests[0]["DeviceIDs"] == ["0"]


def test_a_restarted_agent_keeps_the_gpus_its_containers_hold() -> None:
    h = Harness(Config(node="n1", cpu_millis=4000, devices={"nvidia.com/gpu": ("0", "1")}))
    h.boot(containers=(container("a", devices="nvidia.com/gpu=0"),))
    gpu = {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}}}
    h.assign(assignment("a", **gpu), assignment("b", **gpu))
    [create] = of(h.send(ev.ImagePulled(("b", 1), "i", None)), ev.Create)
    assert create.request.device_requests[0]["DeviceIDs"] == ["1"]


def test_a_node_the_server_forgot_registers_again() -> None:
    h = Harness()
    h.boot()
    h.tick(1.0)
    assert of(h.send(ev.HeartbeatFailed(transport=False, unknown=True)), ev.Register)
    h.send(ev.RegisterAnswered(ok=True))
    assert of(h.send(ev.HeartbeatAnswered(h.clock.monotonic(), known=False)), ev.Register)
