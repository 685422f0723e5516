"""The web app in a real browser: Debian's chromium driven by Playwright, on a live uvicorn server.

Every page loads with no console error, passes axe-core (no serious or
critical violation) and is screenshotted (the folder is printed; set
LTVCAST_UI_SCREENSHOTS=DIR to write them there too); a customer lookup, a
segment click with its export and a planner run make their round trips;
logged out, a page redirects to the login; the pages work from the keyboard.
Skipped without playwright or chromium, except under CI=true (.ci/run installs chromium).
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from test_ui import PAGES, READ_KEY, ui_shop  # noqa: F401  (the shared fixture)

from ltvcast.actions import targeting as tg

CHROMIUM = os.environ.get("LTVCAST_CHROMIUM", "/usr/bin/chromium")
AXE = "/ui/static/vendor/axe-core-4.14.1.min.js"
NAV = ("Overview", "Customer", "Segments", "Categories", "Campaign planner", "Experiments", "Model health")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -c constraints.txt -e '.[dev]')"
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).is_file():
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


if _missing() is not None:
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"browser tests cannot run under CI: {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """Run ``app`` with uvicorn on a free local port in a thread; yields its base URL."""
    import uvicorn

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def server(ui_shop):  # noqa: F811
    with serving(ui_shop.app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> list[Path]:
    folders = [tmp_path_factory.mktemp("ui-screenshots")]
    if os.environ.get("LTVCAST_UI_SCREENSHOTS"):
        folders.append(Path(os.environ["LTVCAST_UI_SCREENSHOTS"]))
        folders[-1].mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folders[0]}")
    return folders


class Watched:
    """A signed-in page that records console errors and uncaught exceptions."""

    def __init__(self, browser, server: str) -> None:
        self.context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900},
                                           accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("response", lambda r: self.errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
        self.page.goto("/ui/login")
        self.page.get_by_label("API key").fill(READ_KEY)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/ui/")

    def charts_drawn(self) -> None:
        for chart in self.page.locator("div.vega").all():
            expect(chart.locator("svg").first).to_be_visible(timeout=15_000)


@pytest.fixture()
def signed_in(browser, server):
    w = Watched(browser, server)
    yield w
    w.context.close()


def test_logged_out_pages_redirect_to_the_login(browser, server):
    context = browser.new_context(base_url=server)
    page = context.new_page()
    for path in PAGES:
        page.goto(path)
        assert "/ui/login?next=" in page.url, path
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    response = context.request.get("/ui/segments.csv?rfm=champions", max_redirects=0)
    assert response.status == 303 and "customer_id" not in response.text()
    context.close()


def test_every_page_loads_cleanly_passes_axe_and_is_screenshotted(signed_in, shots, ui_shop):  # noqa: F811
    page = signed_in.page
    top = ui_shop.predictions.sort_values("pred_spend").iloc[-1]["customer_id"]
    for path, name in ((p, p.strip("/").replace("ui", "", 1).strip("/") or "overview") for p in PAGES):
        page.goto(path + (f"?id={top}" if name == "customer" else ""))
        expect(page.locator("h1")).to_have_count(1)
        signed_in.charts_drawn()
        if name == "segments":
            page.locator("button.cell").first.click()
            expect(page.locator("#segment-list h2")).to_be_visible()
        if name == "planner":
            page.get_by_role("button", name="Plan the campaign").click()
            expect(page.locator("#plan-contacted")).to_be_visible()
        page.add_script_tag(url=AXE)
        result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == [], f"{path}: {bad}"
        for folder in shots:
            page.screenshot(path=str(folder / f"ui-{name}.png"), full_page=True)
    assert signed_in.errors == []


def test_customer_lookup_round_trip(signed_in, ui_shop):  # noqa: F811
    page = signed_in.page
    row = ui_shop.predictions.sort_values("pred_spend").iloc[-2]
    page.get_by_role("link", name="Customer").click()
    page.get_by_label("Customer id").fill(str(row["customer_id"]))
    page.get_by_label("Customer id").press("Enter")
    expect(page.locator("#pred-spend")).to_have_text(f"{row['pred_spend']:,.2f}")
    expect(page.locator("#p-churn")).to_have_text(f"{row['p_churn']:.1%}")
    expect(page.locator("#reasons ol.reasons li")).to_have_count(6)
    signed_in.charts_drawn()
    page.get_by_label("Customer id").fill("nobody-at-all")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("alert")).to_contain_text("No customer")
    assert signed_in.errors == []


def test_segment_click_lists_the_cell_and_exports_it(signed_in, ui_shop, tmp_path):  # noqa: F811
    page = signed_in.page
    segs = ui_shop.segments
    tier, risk = segs.groupby(["value_tier", "churn_risk"], observed=True).size().idxmax()
    want = segs[(segs["value_tier"] == tier) & (segs["churn_risk"] == risk)]
    page.goto("/ui/segments")
    page.locator(f'button.cell[data-tier="{tier}"][data-risk="{risk}"]').click()
    expect(page.locator("#segment-list h2")).to_have_text(f"value tier {tier}, churn risk {risk}: {len(want):,} customers")
    expect(page.locator("#segment-list h2")).to_be_focused()
    with page.expect_download() as info:
        page.locator("#segment-export").click()
    path = tmp_path / "segment.csv"
    info.value.save_as(path)
    with path.open(encoding="utf-8") as f:
        ids = sorted(r["customer_id"] for r in csv.DictReader(f))
    assert ids == sorted(want["customer_id"].astype(str))
    assert signed_in.errors == []


def test_planner_run_and_export(signed_in, ui_shop, tmp_path):  # noqa: F811
    page = signed_in.page
    want = tg.target_by_assumption(ui_shop.predictions, tg.Economics(300.0, 0.5, 1.0, 0.3), 0.2)
    page.goto("/ui/planner")
    for label, value in (("Budget", "300"), ("Cost per contact", "0.5"), ("Cost per redeemed offer", "1"),
                         ("Margin (share of spend)", "0.3"), ("Assumed uplift (share of value at risk)", "0.2")):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Plan the campaign").click()
    s = want.summary
    expect(page.locator("#plan-contacted")).to_have_text(f"{s['contacted']:,} of {s['customers_scored']:,}")
    expect(page.locator("#plan-margin")).to_have_text(f"{s['expected_incremental_margin']:,.2f}")
    assert page.url.endswith("/ui/planner")  # htmx swapped the result in place
    with page.expect_download() as info:
        page.locator("#plan-export").click()
    path = tmp_path / "contacts.csv"
    info.value.save_as(path)
    with path.open(encoding="utf-8") as f:
        assert [r["customer_id"] for r in csv.DictReader(f)] == list(want.contacts["customer_id"])
    assert signed_in.errors == []


def test_keyboard_navigation_and_labels(signed_in):
    page = signed_in.page
    for path in PAGES:
        page.goto(path)
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML)""")
        assert unlabelled == [], path
    page.goto("/ui/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto("/ui/")
    seen = []
    for _ in range(len(NAV) + 1):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.textContent.trim()"))
    assert seen[1:] == list(NAV)
    for _ in range(NAV.index("Model health") - NAV.index("Segments")):
        page.keyboard.press("Shift+Tab")  # back on "Segments"
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/segments")
    page.locator("button.cell").first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#segment-list h2")).to_be_focused()
    assert signed_in.errors == []
