"""The dashboard in a real browser against a real server and real agents (Docker) — issue 18.

Each page loads with no console error; a task finishing and a node being cordoned appear on an open page
within 2 s of the API saying so, without a reload; the actions work after a confirmation and are refused
(and not offered) to roles without the right; the session cookie is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LIVE_S, Dashboard, Screen
from tests.cluster import BASE_IMAGE, wait_for
from updraft.security.tokens import Role

pytestmark = pytest.mark.docker
Open = Callable[[Dashboard, Role | None], Screen]
LIVE_MS = LIVE_S * 1000


def mark_page(s: Screen) -> None:
    """A value only this page load holds: if it survives, the page was updated in place, not reloaded."""
    s.page.evaluate("window.__sameLoad = 'yes'")


def same_load(s: Screen) -> bool:
    return bool(s.page.evaluate("window.__sameLoad === 'yes'"))


def test_every_page_loads_without_console_errors(dashboard: Dashboard, screen: Open) -> None:
    c = dashboard.cluster.client()
    task = c.run(image=BASE_IMAGE, command=["python3", "-c", "print('hello from the dashboard test')"],
                 origin="edge", secret_env={"DB_PASSWORD": "s3cret-value"}, timeout=60)
    assert str(task.state) == "succeeded"
    s = screen(dashboard, Role.ADMIN)
    page = s.page
    assert page.url.endswith("/ui/fleet")
    for name in ("edge", "cloud"):
        row = page.locator(f"#node-{name}")
        expect(row).to_be_visible()
        expect(row.locator(".bar")).to_have_count(2)  # cpu and memory, each with its threshold mark
        expect(row.locator(".bar .m")).to_have_count(2)
    expect(page.locator("#node-cloud .taint")).to_have_text("gpu=yes:PreferNoSchedule")
    expect(page.locator("#node-edge .label")).to_have_text("zone=a")
    expect(page.locator("#node-edge .age")).not_to_have_text("-")  # drawn by the page from the heartbeat time
    # filter and sort, in the page
    page.fill("#fleet-filter", "low-util")
    expect(page.locator("#node-edge")).to_be_hidden()
    expect(page.locator("#node-cloud")).to_be_visible()
    page.fill("#fleet-filter", "")
    page.click("#fleet [data-sort=name]")  # name was ascending: now descending
    expect(page.locator("#fleet-rows > .frow").first).to_have_id("node-edge")
    s.shot("fleet")

    s.go("/ui/flows")
    expect(page.locator("#flow-pairs")).to_contain_text("edge")
    expect(page.locator("#flow-pairs code.code").first).to_be_visible()  # the reason codes of the decisions
    expect(page.locator("svg.flows path.link").first).to_be_attached()
    s.shot("flows")

    s.go("/ui/tasks")
    expect(page.locator(f"#task-{task.id}")).to_be_visible()
    page.fill("#q", "no-such-image-anywhere")
    expect(page.locator(f"#task-{task.id}")).to_have_count(0)
    page.fill("#q", task.id)
    expect(page.locator(f"#task-{task.id}")).to_be_visible()
    page.select_option("#f-state", "failed")
    expect(page.locator(f"#task-{task.id}")).to_have_count(0)
    page.select_option("#f-state", "succeeded")
    page.select_option("#f-origin", "edge")
    expect(page.locator(f"#task-{task.id}")).to_be_visible()
    s.shot("tasks")

    page.click(f"#task-{task.id} a")
    expect(page.locator("#task-id")).to_have_text(task.id)
    expect(page.locator("#logs")).to_contain_text("hello from the dashboard test")
    expect(page.locator("#spec")).to_contain_text("DB_PASSWORD")
    expect(page.locator("#spec")).to_contain_text("<redacted>")
    assert "s3cret-value" not in page.content()
    attempt = task.attempts[-1]
    expect(page.locator("table.attempts tbody tr").first).to_contain_text(str(attempt.token))
    expect(page.locator("table.attempts tbody tr").first).to_contain_text(attempt.node)
    expect(page.locator("#timeline")).to_contain_text("submitted")
    expect(page.locator("#timeline code.code").first).to_be_visible()
    s.shot("task")

    s.go("/ui/events")
    expect(page.locator("#event-rows tr").first).to_be_visible()
    expect(page.locator("#event-rows")).to_contain_text("node-registered")
    s.shot("events")
    s.no_errors()


def test_a_task_finishing_appears_without_a_reload(dashboard: Dashboard, screen: Open) -> None:
    c = dashboard.cluster.client()
    script = "import time; print('working', flush=True); time.sleep(3); print('finishing', flush=True)"
    s = screen(dashboard, Role.OPERATOR)
    page = s.page
    s.go("/ui/tasks")
    mark_page(s)
    task = c.submit(image=BASE_IMAGE, command=["python3", "-c", script], origin="edge", timeout=60)
    expect(page.locator(f"#task-{task.id}")).to_be_visible(timeout=LIVE_MS)  # a new task shows up in the list
    s.go(f"/ui/tasks/{task.id}")
    mark_page(s)
    expect(page.locator("#logs")).to_contain_text("working", timeout=30_000)  # live logs
    done = c.wait(task.id, timeout=60)
    assert str(done.state) == "succeeded"
    expect(page.locator("#task-state-word")).to_have_text("succeeded", timeout=LIVE_MS)
    expect(page.locator("#logs")).to_contain_text("finishing", timeout=LIVE_MS)
    expect(page.locator("#timeline")).to_contain_text("succeeded", timeout=LIVE_MS)
    assert same_load(s)
    s.no_errors()


def test_a_cordon_appears_live_and_actions_work_after_a_confirmation(dashboard: Dashboard, screen: Open) -> None:
    c = dashboard.cluster.client()
    s = screen(dashboard, Role.OPERATOR)
    page = s.page
    s.go("/ui/fleet")
    mark_page(s)
    c.cordon("cloud")  # through the API: the open page learns it live
    expect(page.locator("#node-cloud .f-cordoned")).to_be_visible(timeout=LIVE_MS)

    s.confirm = False  # a declined confirmation does nothing
    page.click("#node-cloud button:text-is('uncordon')")
    assert c.node("cloud").cordoned
    s.confirm = True
    page.click("#node-cloud button:text-is('uncordon')")
    expect(page.locator("#flash")).to_contain_text("node cloud uncordoned")
    assert not c.node("cloud").cordoned
    expect(page.locator("#node-cloud .f-cordoned")).to_have_count(0, timeout=LIVE_MS)

    page.click("#node-cloud button:text-is('drain')")
    expect(page.locator("#flash")).to_contain_text("node cloud draining")
    node = c.node("cloud")
    assert node.draining and node.cordoned
    expect(page.locator("#node-cloud .f-draining")).to_be_visible(timeout=LIVE_MS)
    page.click("#node-cloud button:text-is('uncordon')")
    wait_for(lambda: not c.node("cloud").cordoned, timeout=10, what="cloud uncordoned")
    assert same_load(s)

    s.go("/ui/events")  # the stream of events, live too
    mark_page(s)
    c.cordon("edge")
    expect(page.locator("#event-rows tr").first).to_contain_text("node edge cordoned", timeout=LIVE_MS)
    c.uncordon("edge")
    expect(page.locator("#event-rows tr").first).to_contain_text("node edge uncordoned", timeout=LIVE_MS)
    assert same_load(s)

    task = c.submit(image=BASE_IMAGE, command=["sleep", "120"], origin="edge", timeout=300)
    wait_for(lambda: str(c.get(task.id).state) == "running", timeout=60, what="the task running")
    s.go(f"/ui/tasks/{task.id}")
    mark_page(s)
    page.click("#cancel")
    expect(page.locator("#flash")).to_contain_text(f"task {task.id} cancelled")
    assert str(c.get(task.id).state) == "cancelled"
    expect(page.locator("#task-state-word")).to_have_text("cancelled", timeout=LIVE_MS)
    assert same_load(s)
    s.no_errors()


POST_AS_PAGE = """async (url) => (await fetch(url, {method: 'POST', headers: {'X-CSRF-Token': document.body.dataset.csrf}})).status"""
POST_NO_CSRF = """async (url) => (await fetch(url, {method: 'POST'})).status"""
GET_STATUS = """async (url) => (await fetch(url)).status"""


def test_roles_without_the_right_are_refused_and_not_offered(dashboard: Dashboard, screen: Open) -> None:
    c = dashboard.cluster.client()
    sub = screen(dashboard, Role.SUBMITTER)
    page = sub.page
    assert page.url.endswith("/ui/tasks")  # a submitter cannot read nodes: the tasks are home
    expect(page.locator("header nav a")).to_have_text(["Tasks"])
    assert sub.go("/ui/fleet").locator("#refused").inner_text().startswith("403")
    expect(page.locator("button[data-act=cordon], button[data-act=drain]")).to_have_count(0)
    assert page.evaluate(POST_AS_PAGE, "/ui/nodes/edge/cordon") == 403
    assert page.evaluate(POST_AS_PAGE, "/ui/nodes/edge/drain") == 403
    assert page.evaluate(GET_STATUS, "/ui/live/fleet") == 403
    node = c.node("edge")
    assert not node.cordoned and not node.draining
    # what a submitter may do, it is offered: cancel
    task = c.submit(image=BASE_IMAGE, command=["sleep", "120"], origin="edge", timeout=300)
    sub.go(f"/ui/tasks/{task.id}")
    expect(page.locator("#cancel")).to_be_visible()
    # the refusals are the only errors the console saw (the browser logs the refused page and each refused fetch)
    assert all("status of 403" in e for e in sub.errors) and len(sub.errors) == 4, sub.errors

    # without the CSRF token even an admin's action is refused
    admin = screen(dashboard, Role.ADMIN)
    admin.go("/ui/fleet")
    assert admin.page.evaluate(POST_NO_CSRF, f"/ui/tasks/{task.id}/cancel") == 403
    assert str(c.get(task.id).state) != "cancelled"
    cookie = next(k for k in admin.page.context.cookies() if k["name"] == "updraft_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert admin.page.evaluate("document.cookie") == ""
    c.cancel(task.id)

    # roles that may use no page, and tokens that are not valid, are refused at the login
    metrics = screen(dashboard, Role.METRICS)
    expect(metrics.page.locator("#login-error")).to_contain_text("cannot use the dashboard")
    stranger = screen(dashboard, None)
    stranger.go("/ui/fleet")
    assert stranger.page.url.endswith("/ui/login")
    stranger.page.fill("#token", dashboard.tokens[Role.ADMIN][:-2] + "xx")
    stranger.page.click("#login")
    expect(stranger.page.locator("#login-error")).to_contain_text("not valid")

    # logging out ends the session on the server
    admin.page.click("header .logout button")
    admin.page.wait_for_url("**/ui/login")
    admin.go("/ui/fleet")
    assert admin.page.url.endswith("/ui/login")


def test_flows_show_an_offload_with_its_reason(dashboard: Dashboard, screen: Open) -> None:
    c = dashboard.cluster.client()
    # Occupy the edge (a pinned task requesting all of its cpu): the next task from it is offloaded to cloud.
    hog = c.submit(image=BASE_IMAGE, command=["sleep", "120"], origin="edge", offloadable=False,
                   resources={"requests": {"cpu": "500m"}}, timeout=300)
    wait_for(lambda: str(c.get(hog.id).state) == "running", 60, what="the hog running")
    task = c.run(image=BASE_IMAGE, command=["true"], origin="edge", timeout=60)
    assert task.current is not None and task.current.node == "cloud" and task.current.placement == "offload"
    offloaded = next(e for e in c.events(task.id) if str(e.kind) == "offloaded")
    s = screen(dashboard, Role.OPERATOR)
    page = s.go("/ui/flows?minutes=5")
    pair = page.locator("#flow-pairs tr.offload", has_text="cloud")
    expect(pair).to_contain_text("edge")
    expect(pair).to_contain_text(str(offloaded.code))
    expect(page.locator("svg.flows path.link.offload")).to_have_count(1)
    s.shot("flows-offload")
    s.go(f"/ui/tasks/{task.id}")
    expect(page.locator("#timeline")).to_contain_text(str(offloaded.code))
    expect(page.locator("table.attempts")).to_contain_text("offload")
    c.cancel(hog.id)
    s.no_errors()
