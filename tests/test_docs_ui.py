"""``/docs`` renders the OpenAPI 3.1 schema in a real headless Chromium, offline.

The HTTP test only saw a 200; Swagger UI 4 answers 200 too and then shows "Unable to render
this definition" for OpenAPI 3.1. Here the page must list the operations, with every asset
served by our own server (any request elsewhere fails the test).
"""

from __future__ import annotations

import pytest

from tablelm.interfaces.server import background_server, create_app, swagger_ui_dir

from test_web_ui import CHROMIUM_ARGS, _browser_or_fail

pytestmark = pytest.mark.ui


def test_swagger_ui_is_version_5_or_later():
    folder = swagger_ui_dir()
    assert folder is not None, "no Swagger UI >= 5 installed: pip install 'swagger-ui-bundle-v2>=5'"
    assert int(folder.name.split("-")[-1].split(".")[0]) >= 5


def test_docs_render_the_operations_offline(tiny_model):
    sync_playwright, chromium = _browser_or_fail()
    with background_server(create_app(tiny_model)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            foreign = []
            page.on("request", lambda r: None if r.url.startswith(url) or r.url.startswith("data:")
                    else foreign.append(r.url))
            page.goto(url + "/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=20000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert "/ask" in [p.strip() for p in paths] and "/entities/{entity_id}" in [p.strip() for p in paths]
            assert page.locator("text=Unable to render this definition").count() == 0
            # an operation opens and shows its parameters
            page.locator(".opblock-summary-path", has_text="/entities/{entity_id}").first.click()
            page.wait_for_selector(".parameter__name", timeout=10000)
            assert "entity_id" in page.locator(".parameter__name").first.inner_text()
            assert not foreign, f"/docs fetched from outside the server: {foreign}"
        finally:
            browser.close()
