"""The tenant console in a real browser (Debian's chromium, headless) against the local platform.

Every flow the console offers: sign-in, endpoints (create with the secret shown once and copied, test,
rotate, disable and enable), the delivery log and a delivery's page (the envelope exactly as the
receiver got it, the attempts, replay), recovering a time window, scopes hiding write controls,
registries, hostile text, phone width and the keyboard. See conftest.py for what every test checks.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta

import pytest
import requests
from playwright.sync_api import expect

from meshanics.signing import verify
from meshanics_local.receiver import Behaviour, Receiver, running_receiver
from tests.console.conftest import ADMIN, EVERY_SCOPE, OPERATOR, READ_ONLY, Console, Tenant

pytestmark = pytest.mark.e2e


def create_endpoint(tenant: Tenant, key: str, url: str, **fields: object) -> dict:
    body = {"url": url, "events": ["rollout.*"], "allow_private_network": True, **fields}
    created: dict = tenant.call(key, "POST", "/v1/webhooks", body)
    return created


def write_event(tenant: Tenant, key: str, rollout_id: str = "r-1") -> dict:
    event = {"type": "rollout.created", "subject": f"rollout/{rollout_id}", "data": {"rollout_id": rollout_id}}
    written: dict = tenant.call(key, "POST", "/v1/events", event)["items"][0]
    return written


def signed_with(received: Receiver, index: int, secret: str) -> None:
    request = received.requests[index]
    verify(request.body, request.headers["X-Meshanics-Signature"], secret, tolerance=300)


def test_create_an_endpoint_copy_its_secret_and_follow_a_delivery(tenant: Tenant, console: Console) -> None:
    key = tenant.key(ADMIN)
    with running_receiver() as receiver:
        console.sign_in(key)
        page = console.page
        expect(page.get_by_role("heading", name="No endpoints yet")).to_be_visible()
        console.shot("empty-list")
        page.get_by_role("link", name="New endpoint").click()
        page.get_by_label("URL", exact=True).fill(receiver.url)
        page.get_by_label("All events, including types added later").uncheck()
        page.get_by_label("All rollouts (rollout.*)").check()
        page.get_by_label("Description").fill("rollout notifications")
        page.get_by_label("Allow a private-network receiver").check()
        console.shot("create-form")
        page.get_by_role("button", name="Create endpoint").click()

        expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
        expect(page.get_by_text("shown only this once")).to_be_visible()
        secret = page.get_by_role("textbox", name="Signing secret").input_value()
        assert secret.startswith("whsec_")
        page.get_by_role("button", name="Copy secret").click()
        expect(page.get_by_text("Copied.")).to_be_visible()
        assert page.evaluate("() => navigator.clipboard.readText()") == secret
        console.shot("secret-shown-once")
        page.get_by_role("link", name=re.compile("open the endpoint")).click()
        expect(page.get_by_role("heading", name=receiver.url)).to_be_visible()
        assert secret not in page.content()  # shown once: gone from the page after that

        written = write_event(tenant, key, "r-42")
        receiver.wait_for(1, timeout=20)
        signed_with(receiver, 0, secret)
        row = page.locator("tr", has_text="rollout.created")
        expect(row).to_contain_text("delivered", timeout=20_000)  # the log refreshes itself
        console.shot("delivery-log")
        row.get_by_role("link").click()

        expect(page.get_by_role("heading", name=f"rollout.created #{written['sequence']}")).to_be_visible()
        sent = page.locator("#envelope-sent")
        assert sent.text_content() == receiver.requests[0].body.decode()  # exactly the bytes the receiver got
        timeline = page.locator("ol.timeline > li")
        expect(timeline).to_have_count(1)
        expect(timeline.first).to_contain_text("Attempt 1")
        expect(timeline.first).to_contain_text("HTTP 200")
        console.shot("delivery-page")

        page.get_by_role("button", name="Replay").click()
        expect(page.get_by_text("Replay queued")).to_be_visible()
        receiver.wait_for(2, timeout=20)
        expect(timeline).to_have_count(2, timeout=20_000)  # the page follows the replay until it settles
        expect(timeline.nth(1)).to_contain_text("Attempt 2")
        assert receiver.requests[1].body == receiver.requests[0].body
        assert receiver.requests[1].headers["X-Meshanics-Delivery"] == written["idempotency_key"]
        console.shot("replayed")

        page.get_by_role("link", name="Back to the endpoint").click()
        expect(page.get_by_role("heading", name=receiver.url)).to_be_visible()
        page.get_by_role("link", name="Endpoints").click()
        row = page.locator("tbody tr", has_text=receiver.url)
        expect(row).to_contain_text("rollout notifications")
        expect(row).to_contain_text("enabled")
        expect(row.locator("td").nth(2)).to_contain_text("ago")  # last success, from the endpoint's health
        console.shot("list-with-health")

        row.locator(".endpoint-url").click()
        page.get_by_role("link", name="Stats").click()
        last_day = page.get_by_role("region", name="Last 24 hours")
        expect(last_day.locator(".big")).to_have_text("100 % success")
        # (health counters are flushed in batches: the replay's attempt may not be counted yet)
        expect(last_day.locator(".legend")).to_contain_text(re.compile(r"delivered [12]"))
        expect(page.locator("svg.chart.outcome")).to_have_count(2)
        console.shot("stats")


def test_send_a_test_rotate_the_secret_disable_and_enable(tenant: Tenant, console: Console) -> None:
    key = tenant.key(ADMIN)
    with running_receiver() as receiver:
        created = create_endpoint(tenant, key, receiver.url)
        console.sign_in(key)
        page = console.page
        console.open(f"#/endpoints/{created['id']}")

        page.get_by_role("button", name="Send test").click()
        outcome = page.locator(".test-outcome")
        expect(outcome).to_contain_text("Test delivered")
        expect(outcome).to_contain_text("HTTP 200")
        signed_with(receiver, 0, created["secret"])
        console.shot("test-delivered")

        receiver.behaviours = [Behaviour(status=500)]
        page.get_by_role("button", name="Send test").click()
        expect(outcome).to_contain_text("Test failed")
        expect(outcome).to_contain_text("HTTP 500")
        console.shot("test-failed")
        receiver.behaviours = []

        page.get_by_role("button", name="Rotate secret").click()
        dialog = page.get_by_role("dialog", name="Rotate the signing secret")
        dialog.get_by_label("Overlap").select_option("3600")
        console.shot("rotate-dialog")
        dialog.get_by_role("button", name="Rotate").click()
        expect(page.get_by_role("heading", name="New signing secret")).to_be_visible()
        expect(page.get_by_text("The previous secret keeps signing until")).to_be_visible()
        new_secret = page.get_by_role("textbox", name="New signing secret").input_value()
        assert new_secret.startswith("whsec_") and new_secret != created["secret"]
        console.shot("rotated")
        page.get_by_role("button", name="Send test").click()
        expect(outcome).to_contain_text("Test delivered")
        signed_with(receiver, 2, new_secret)
        signed_with(receiver, 2, created["secret"])  # the overlap: both sign

        page.get_by_role("button", name="Disable").click()
        expect(page.get_by_text("Endpoint disabled")).to_be_visible()
        expect(page.locator(".facts")).to_contain_text("disabled by an administrator")
        console.shot("disabled")
        assert tenant.call(key, "GET", f"/v1/webhooks/{created['id']}")["enabled"] is False
        page.get_by_role("button", name="Enable").click()
        expect(page.get_by_text("Endpoint enabled.")).to_be_visible()
        assert tenant.call(key, "GET", f"/v1/webhooks/{created['id']}")["enabled"] is True

        page.get_by_role("link", name="Settings").click()
        page.get_by_label("Description").fill("edited in the console")
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_text("Changes saved.")).to_be_visible()
        assert tenant.call(key, "GET", f"/v1/webhooks/{created['id']}")["description"] == "edited in the console"

        page.get_by_role("button", name="Delete").click()
        page.get_by_role("dialog").get_by_role("button", name="Delete endpoint").click()
        expect(page.get_by_text("Endpoint deleted.")).to_be_visible()
        expect(page.get_by_role("heading", name="No endpoints yet")).to_be_visible()


def test_filter_and_page_the_delivery_log(tenant: Tenant, console: Console) -> None:
    key = tenant.key(ADMIN)
    with running_receiver() as receiver:
        created = create_endpoint(tenant, key, receiver.url, events=[])
        for n in range(21):
            write_event(tenant, key, f"r-{n}")
        tenant.call(
            key,
            "POST",
            "/v1/events",
            {"type": "device.enrolled", "subject": "device/d-1", "data": {"device_id": "d-1"}},
        )
        receiver.wait_for(22, timeout=30)
        console.sign_in(key)
        page = console.page
        console.open(f"#/endpoints/{created['id']}")
        rows = page.locator("table.deliveries tbody tr")
        expect(rows).not_to_have_count(0)
        seen: list[str] = []
        older = page.get_by_role("button", name="Older")
        while True:  # page back through the log (pages hold up to 20)
            expect(rows.first).not_to_have_attribute("data-delivery", seen[-1] if seen else "none")
            ids = rows.evaluate_all("rows => rows.map(row => row.dataset.delivery)")
            assert not set(ids) & set(seen)
            sequences = [int(i.rsplit("_", 1)[1]) for i in ids]
            assert sequences == sorted(sequences, reverse=True)  # newest first
            seen += ids
            if older.is_disabled():
                break
            older.click()
        expected: list[str] = []
        cursor = ""
        while cursor is not None:  # what the API lists, page by page
            listed = tenant.call(key, "GET", f"/v1/webhooks/{created['id']}/deliveries?limit=100&cursor={cursor}")
            expected += [d["id"] for d in listed["items"]]
            cursor = listed["next_cursor"]
        assert seen == expected and len(seen) >= 22
        page.get_by_role("button", name="Newer").click()
        expect(rows.first).not_to_have_attribute("data-delivery", seen[-1])
        page.get_by_label("Event type").fill("device.*")
        page.get_by_role("button", name="Apply filters").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("device.enrolled")
        page.get_by_label("Status", exact=True).select_option("failed")
        page.get_by_role("button", name="Apply filters").click()
        expect(page.get_by_role("heading", name="No deliveries match these filters")).to_be_visible()
        console.shot("filtered")
        page.get_by_label("Status", exact=True).select_option("")
        page.get_by_label("Event type").fill("not a type!")
        page.get_by_role("button", name="Apply filters").click()
        expect(page.get_by_role("alert")).to_contain_text("event_type")  # the API's error, named field
        console.allow_console_error("status of 400")
        console.shot("filter-error")


def test_recover_a_window_now_and_scheduled(tenant: Tenant, console: Console) -> None:
    spec = requests.get(f"{tenant.stack.api_url}/v1/openapi.json", timeout=30).json()
    recover = [path for path in spec["paths"] if re.fullmatch(r"/v1/webhooks/\{[^}]+\}/recover", path)]
    assert recover, "this API has no POST /v1/webhooks/{id}/recover"
    key = tenant.key(ADMIN)
    with running_receiver(lambda r: r.behaviours.append(Behaviour(status=500))) as receiver:
        created = create_endpoint(tenant, key, receiver.url)
        write_event(tenant, key, "r-lost")
        receiver.wait_for(3, timeout=30)  # every attempt fails
        deadline = time.monotonic() + 20
        while tenant.call(key, "GET", f"/v1/webhooks/{created['id']}/deliveries")["items"][0]["status"] != "failed":
            assert time.monotonic() < deadline, "the delivery never settled as failed"
            time.sleep(0.3)
        receiver.behaviours = [Behaviour(status=200)]

        console.sign_in(key)
        page = console.page
        console.open(f"#/endpoints/{created['id']}/recover")
        since = (datetime.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        page.get_by_label("From").fill(since)
        page.get_by_label("Failed ones").check()
        console.shot("recover-form")
        page.get_by_role("button", name="Recover").click()
        expect(page.get_by_text("Recovery started.")).to_be_visible()
        recovery = page.locator("table.replays-table tbody tr").first
        expect(recovery).to_contain_text("completed", timeout=20_000)  # followed until done
        expect(recovery).to_contain_text("1 sent")
        receiver.wait_for(4, timeout=20)
        assert receiver.requests[3].body == receiver.requests[0].body
        console.shot("recovered")

        later = (datetime.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
        page.get_by_label("At a scheduled time").check()
        page.get_by_label("Start at").fill(later)
        page.get_by_role("button", name="Recover").click()
        expect(page.get_by_text("Recovery scheduled for")).to_be_visible()
        scheduled = page.locator("table.replays-table tbody tr", has_text="scheduled")
        expect(scheduled).to_have_count(1)
        console.shot("scheduled")
        scheduled.get_by_role("button", name="Cancel").click()
        expect(page.locator("table.replays-table tbody tr").first).to_contain_text("cancelled")
        console.shot("cancelled")


def test_a_read_only_key_sees_no_write_controls(tenant: Tenant, console: Console) -> None:
    admin = tenant.key(EVERY_SCOPE)
    with running_receiver() as receiver:
        created = create_endpoint(tenant, admin, receiver.url)
        write_event(tenant, admin)
        receiver.wait_for(1, timeout=20)
        tenant.call(
            admin,
            "POST",
            "/v1/registries",
            {
                "name": "corp",
                "upstream_url": "http://127.0.0.1:9/",
                "allow_private_network": True,
                "credentials": {"type": "token", "token": "t"},
            },
        )
        console.sign_in(tenant.key(READ_ONLY))
        page = console.page
        expect(page.locator(".who")).to_contain_text("integrations:read")
        expect(page.locator("tbody tr")).to_have_count(1)
        expect(page.get_by_role("link", name="New endpoint")).to_have_count(0)
        console.shot("read-only-list")

        page.get_by_role("link", name=created["url"]).click()
        expect(page.get_by_role("heading", name=created["url"])).to_be_visible()
        for name in ("Send test", "Disable", "Enable", "Rotate secret", "Delete"):
            expect(page.get_by_role("button", name=name)).to_have_count(0)
        expect(page.get_by_role("link", name="Settings")).to_have_count(0)
        console.shot("read-only-endpoint")
        page.locator("table.deliveries tbody tr a").first.click()
        expect(page.get_by_role("heading", name=re.compile("rollout.created"))).to_be_visible()
        expect(page.get_by_role("button", name="Replay")).to_have_count(0)

        console.open("#/endpoints/new")
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_role("button", name="Create endpoint")).to_have_count(0)

        page.get_by_role("link", name="Registries", exact=True).click()
        expect(page.locator(".card.pending")).to_contain_text("corp")
        expect(page.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
        expect(page.get_by_role("button", name="Remove")).to_have_count(0)
        expect(page.get_by_role("button", name="Connect")).to_have_count(0)
        console.shot("read-only-registries")

        page.get_by_role("button", name="Sign out").click()
        console.sign_in(tenant.key(("events:write",)))  # a producer's key opens no page
        expect(page.get_by_role("heading", name="Nothing to show for this key")).to_be_visible()
        expect(page.locator("#nav a")).to_have_count(0)


def test_a_registry_operator_connects_approves_and_manages_a_registry(tenant: Tenant, console: Console) -> None:
    console.sign_in(tenant.key(OPERATOR))
    page = console.page
    # An operator's key opens the registries, and only them.
    expect(page.get_by_role("heading", name="Registries", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Endpoints")).to_have_count(0)
    expect(page.get_by_role("heading", name="No registries connected")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("corp")
    page.get_by_label("Upstream URL").fill("http://127.0.0.1:5999")
    page.get_by_label("The upstream is on a private network").check()
    page.get_by_label("Username", exact=True).fill("puller")
    page.get_by_label("Password", exact=True).fill("secret")
    console.shot("connect-form")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_text("corp connected: it is pending")).to_be_visible()
    expect(page.get_by_label("Name", exact=True)).to_have_value("")  # the form is ready for the next one
    expect(page.get_by_label("Username and password")).to_be_checked()
    card = page.locator(".card", has_text="corp")
    expect(card).to_have_class(re.compile("pending"))
    expect(page.locator(".pending-banner")).to_contain_text("1 connection awaiting approval")
    console.shot("pending")

    card.get_by_role("button", name="Approve corp").click()
    expect(page.get_by_text("corp approved: devices can pull")).to_be_visible()
    expect(card).to_contain_text("approved")
    expect(page.locator(".pending-banner")).to_be_hidden()
    console.shot("approved")

    card.get_by_role("button", name="Update credentials").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("A token (Bearer)").check()
    dialog.get_by_label("Token", exact=True).fill("a-token")
    dialog.get_by_role("button", name="Save credentials").click()
    expect(page.get_by_text("Credentials of corp updated.")).to_be_visible()
    expect(card).to_contain_text("token")

    card.get_by_role("button", name="Remove").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove connection").click()
    expect(page.get_by_text("corp removed.")).to_be_visible()
    expect(page.get_by_role("heading", name="No registries connected")).to_be_visible()


XSS_DESCRIPTION = '<img src=x onerror=alert(1)> "><script>alert(2)</script>'
XSS_PATH = '/<img%20src=x%20onerror=alert(1)>/"><script>alert(3)</script>'


def test_hostile_descriptions_urls_and_event_data_render_as_text(tenant: Tenant, console: Console) -> None:
    key = tenant.key(ADMIN)
    with running_receiver() as receiver:
        hostile_url = receiver.url.rsplit("/", 1)[0] + XSS_PATH
        console.sign_in(key)
        page = console.page
        page.get_by_role("link", name="New endpoint").click()
        page.get_by_label("URL", exact=True).fill(hostile_url)
        page.get_by_label("Description").fill(XSS_DESCRIPTION)
        page.get_by_label("Allow a private-network receiver").check()
        page.get_by_role("button", name="Create endpoint").click()
        expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
        expect(page.locator(".alert.success strong")).to_have_text(hostile_url)

        page.get_by_role("link", name="Endpoints").click()
        row = page.locator("tbody tr")
        expect(row.locator(".endpoint-url")).to_have_text(hostile_url)
        expect(row.locator(".description")).to_have_text(XSS_DESCRIPTION)
        console.shot("hostile-list")
        row.locator(".endpoint-url").click()
        expect(page.locator("h1")).to_have_text(hostile_url)
        expect(page.locator("p.description")).to_have_text(XSS_DESCRIPTION)
        page.get_by_role("button", name="Delete").click()
        expect(page.get_by_role("dialog").locator(".endpoint-url")).to_have_text(hostile_url)
        page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
        page.get_by_role("link", name="Settings").click()
        expect(page.get_by_label("URL", exact=True)).to_have_value(hostile_url)
        console.shot("hostile-endpoint")

        # Event data is tenant-controlled too: a delivery's envelope shows it as text.
        plain = create_endpoint(tenant, key, receiver.url)
        write_event(tenant, key, XSS_DESCRIPTION)
        # (the hostile endpoint takes every event: it gets this one too, at its hostile path)
        # (it and the webhook.created of `plain` go to the hostile path too: wait for the one to /hook)
        deadline = time.monotonic() + 30
        while not (
            sent_now := [r.body for r in receiver.requests if r.path == "/hook" and b"rollout.created" in r.body]
        ):
            assert time.monotonic() < deadline, "the event never reached the plain endpoint"
            time.sleep(0.2)
        [sent] = sent_now
        console.open(f"#/endpoints/{plain['id']}")
        page.locator("table.deliveries tbody tr a").first.click()
        expect(page.locator("#envelope-sent")).to_have_text(sent.decode())
        assert json.loads(page.locator("#envelope-sent").text_content() or "")["data"]["rollout_id"] == XSS_DESCRIPTION
        console.shot("hostile-envelope")

        # Nothing ran and nothing was parsed as markup: no injected element anywhere.
        assert page.evaluate("() => document.querySelectorAll('img[src=x], script:not([type=module])').length") == 0
        assert page.evaluate("() => window.__xss === undefined")
        # (dialogs and console errors are checked by the fixture: there must be none)


def test_the_key_stays_in_session_storage_and_sign_out_forgets_it(tenant: Tenant, console: Console) -> None:
    key = tenant.key(EVERY_SCOPE)
    page = console.page
    console.open()
    page.get_by_label("API key").fill("msk_0000000000000000_" + "x" * 43)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("was not accepted")
    console.allow_console_error("status of 401")
    console.shot("refused")

    console.sign_in(key)
    for link in ("Event catalog", "Registries", "Endpoints"):
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.locator("h1")).to_be_visible()
    expect(page.get_by_role("heading", name="rollouts")).to_have_count(0)
    assert page.evaluate("() => sessionStorage.getItem('meshanics.console.key')") == key
    assert page.evaluate("() => localStorage.length") == 0
    assert console.context.cookies() == []
    assert all(key not in url for url in console.requested + console.visited + [page.url])
    page.reload()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()  # the tab keeps it across reloads

    second = console.context.new_page()  # another tab has its own sessionStorage: signed out
    second.goto(console.url)
    expect(second.get_by_role("button", name="Sign in")).to_be_visible()
    second.close()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Signed out")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    console.shot("signed-out")


def test_the_catalog_phone_width_and_keyboard(tenant: Tenant, console: Console) -> None:
    key = tenant.key(ADMIN)
    with running_receiver() as receiver:
        create_endpoint(tenant, key, receiver.url, description="on a phone")
        page = console.page
        page.set_viewport_size({"width": 390, "height": 844})
        console.open()
        # Keyboard only: the key field has focus, Enter signs in, Tab reaches the links.
        expect(page.get_by_label("API key")).to_be_focused()
        page.keyboard.type(key)
        console.keys.append(key)
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        expect(page.locator("h1")).to_be_focused()  # a new view moves focus to its heading
        assert page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
        expect(page.locator("tbody td[data-label='State']")).to_be_visible()
        console.shot("phone-list")
        for _ in range(20):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.classList.contains('endpoint-url')"):
                break
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text(receiver.url)
        assert page.evaluate("() => document.scrollingElement.scrollWidth <= window.innerWidth")
        console.shot("phone-endpoint")

        page.get_by_role("link", name="Event catalog").click()
        expect(page.get_by_role("heading", name=re.compile("^rollouts"))).to_be_visible()
        expect(page.locator("article.event-type", has_text="rollout.created")).to_contain_text("rollout_id")
        console.shot("phone-catalog")
        page.set_viewport_size({"width": 1280, "height": 900})
        console.shot("catalog")


# Values an envelope's data may hold that JSON writers disagree on: escapes, non-ASCII, numbers.
AWKWARD = [
    {"text": 'é ü 😀 \u2028 "quoted" back\\slash', "tab": "a\tb\nc\r\x08\x0c\x00\x1f\x7f"},
    {"markup": "</script><img src=x onerror=alert(1)>", "ampersand": "&amp;", "slash": "a/b"},
    {"small": 1e-07, "float": 1.5, "huge": 1e300, "negative": -0.25, "int": 2**70, "zero": 0, "minus": -3},
    {"nested": {"list": [1, "two", None, True, False, {"k": []}]}, "ünïcode-key": "v", "empty": {}},
]


def test_the_envelope_is_written_back_byte_for_byte(console: Console) -> None:
    """The delivery page shows the envelope as the platform serialized it (json.dumps, compact, ASCII)."""
    console.open()
    texts = [json.dumps(value, separators=(",", ":"), ensure_ascii=True) for value in AWKWARD]
    written = console.page.evaluate(
        """async (texts) => {
            const base = document.querySelector("script[type=module]").src;
            const format = await import(new URL("format.js", base));
            return texts.map((text) => format.asSent(format.parseKeepingNumbers(text)));
        }""",
        texts,
    )
    assert written == texts
