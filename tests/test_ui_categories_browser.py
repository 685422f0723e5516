"""The categories panel in a real browser (as test_ui_browser.py): it loads after the page, draws the demand
chart, passes axe-core (no serious or critical violation) and logs no console error."""

from __future__ import annotations

import pytest
from test_ui_browser import AXE, Watched, browser, expect, serving, shots  # noqa: F401  (skips without a browser)
from test_ui_categories import category_shop  # noqa: F401  (the shared fixture)


@pytest.fixture(scope="module")
def category_server(category_shop):  # noqa: F811
    with serving(category_shop.app) as url:
        yield url


def test_categories_panel_loads_draws_its_chart_and_passes_axe(browser, category_server, shots):  # noqa: F811
    w = Watched(browser, category_server)
    try:
        page = w.page
        page.get_by_role("link", name="Categories").click()
        page.wait_for_url("**/ui/categories")
        expect(page.locator("#category-demand tbody tr").first).to_be_visible(timeout=120_000)
        expect(page.locator("#category-panel")).not_to_have_attribute("aria-busy", "true")
        w.charts_drawn()
        assert page.locator("#chart-demand svg").count() >= 1
        assert page.locator("#category-segments tbody tr").count() >= 3
        page.add_script_tag(url=AXE)
        result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        bad = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
               for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert bad == []
        for folder in shots:
            page.screenshot(path=str(folder / "ui-categories-panel.png"), full_page=True)
        assert w.errors == []
    finally:
        w.context.close()
