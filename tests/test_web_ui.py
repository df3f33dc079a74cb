"""The web page, end to end in a real headless Chromium (Debian's ``chromium`` + Playwright).

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright
install``: the browser is the system one). When either is missing the test FAILS with
the command to run, because a skipped UI test would hide a broken page.
"""

from __future__ import annotations

import os
import shutil

import pytest

import tablelm
from tablelm.interfaces.server import background_server, create_app

from conftest import XLLM

pytestmark = pytest.mark.ui

CHROMIUM = os.environ.get("TABLELM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PROMPT = "data governance policy"
# A record whose title, tags and text carry markup: the page must show it as text.
EVIL = ("9999~~{'title_text': 'Evil <img src=x onerror=\"window.__pwned=1\"> governance <script>window.__pwned=2"
        "</script>', 'description_text': 'A data governance policy note: <script>window.__pwned=3</script> "
        "<b>bold</b> end.', 'tags_list_text': ['<i>policy</i>'], 'category_text': 'Governance'}")


def _browser_or_fail():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("The UI test needs Playwright for Python: pip install playwright "
                    "(the browser is Debian's chromium; do not run 'playwright install').")
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(f"The UI test needs Chromium at {CHROMIUM}: apt-get update && apt-get install -y chromium "
                    "(or set TABLELM_CHROMIUM to its path).")
    return sync_playwright, path


@pytest.fixture(scope="module")
def evil_model(tmp_path_factory):
    if not XLLM.exists():
        pytest.skip(f"test data not found at {XLLM}")
    src = tmp_path_factory.mktemp("ui-corpus") / "repository.txt"
    src.write_text(XLLM.read_text("utf-8").rstrip("\n") + "\n" + EVIL + "\n", "utf-8")
    return tablelm.build([src], tmp_path_factory.mktemp("ui-model") / "model")


@pytest.fixture(scope="module")
def page_url(evil_model):
    sync_playwright, chromium = _browser_or_fail()
    with background_server(create_app(evil_model)) as url:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            try:
                yield browser, url
            finally:
                browser.close()


def _scores(page) -> list[str]:
    return page.locator("#cards .card .score").all_inner_texts()


def _ids(page) -> list[str]:
    return [c.get_attribute("data-id") for c in page.locator("#cards .card").all()]


def _wait_answer(page, after: int) -> int:
    # a selector, not wait_for_function: the page's CSP forbids the eval that the latter needs
    page.wait_for_selector(f"body[data-answer-seq]:not([data-answer-seq='{after}'])", timeout=15000)
    return int(page.evaluate("document.body.dataset.answerSeq"))


def test_prompt_tune_open_entity_follow_suggestion(page_url, evil_model):
    browser, url = page_url
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#samples a").count() > 0  # sample prompts before the first question

    # the parameter panel is generated from /params: every settable parameter, with its rule
    rows = page.locator("#params .param")
    settable = [p for p in tablelm.params.REGISTRY.values() if p.stage in ("query", "render")]
    assert rows.count() == len(settable)
    assert "[0.0, 2.0]" in page.locator("#wrap-beta .help").inner_text()
    assert float(page.locator("#param-beta").get_attribute("max")) == 2.0

    # type a prompt, see cards
    page.fill("#prompt", PROMPT)
    page.press("#prompt", "Enter")
    seq = _wait_answer(page, 0)
    expected = evil_model.ask(PROMPT)
    assert _ids(page) == [c.id for c in expected.cards]
    first = page.locator("#cards .card").first
    assert first.locator(".title").inner_text() == (expected.cards[0].title or expected.cards[0].id)
    assert first.locator(".why .term").count() > 0
    assert first.locator(".snippet mark").count() > 0
    assert page.locator(".section[data-section='categories'] a").count() > 0
    assert "q=data+governance+policy" in page.url
    before = _scores(page)

    # change a parameter: the answer changes at once, and the URL keeps it
    page.select_option("#param-ranker", "reference")
    seq = _wait_answer(page, seq)
    assert _scores(page) != before
    assert "ranker=reference" in page.url
    assert "changed" in page.locator("#wrap-ranker").get_attribute("class")

    # a number parameter out of its bounds: the server's message, the field marked
    page.fill("#param-beta", "9")
    page.wait_for_selector("#status.error")
    assert "'beta'" in page.locator("#status").inner_text() and "[0.0, 2.0]" in page.locator("#status").inner_text()
    assert "invalid" in page.locator("#wrap-beta").get_attribute("class")

    # reset all: back to the first answer
    page.click("#reset-all")
    seq = _wait_answer(page, seq)
    assert _scores(page) == before and "ranker" not in page.url

    # click a card: the full entity
    card_id = _ids(page)[1]
    page.locator("#cards .card").nth(1).locator(".title").click()
    page.wait_for_selector("#entity-dialog[open]")
    entity = evil_model.entity(card_id)
    assert page.locator("#entity-text").inner_text().strip() == entity.text.strip()
    assert page.locator("#entity-title").inner_text() == entity.title
    page.click("#entity-close")
    page.wait_for_selector("#entity-dialog", state="hidden")

    # a suggested multitoken runs as a new prompt
    link = page.locator(".section[data-section='embeddings'] a").first
    suggestion = link.inner_text()
    link.click()
    seq = _wait_answer(page, seq)
    assert page.input_value("#prompt") == suggestion
    assert page.locator("#status").inner_text().endswith(f"\u201c{suggestion}\u201d")
    assert not errors


def test_markup_in_prompts_and_corpus_is_shown_as_text(page_url):
    browser, url = page_url
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']")
    prompt = "<script>window.__pwned=9</script><img src=x onerror=\"window.__pwned=8\"> evil governance"
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")
    _wait_answer(page, 0)
    assert prompt in page.locator("#status").inner_text()
    evil = page.locator("#cards .card[data-id='9999']")
    assert evil.count() == 1
    assert "<script>window.__pwned=2</script>" in evil.locator(".title").inner_text()
    assert "<i>policy</i>" in evil.locator(".meta").inner_text()
    evil.locator(".title").click()
    page.wait_for_selector("#entity-dialog[open]")
    assert "<script>window.__pwned=3</script>" in page.locator("#entity-text").inner_text()
    # nothing of it became markup or ran
    assert page.locator("main script, main img, main b, dialog script, dialog b, main i").count() == 0
    assert page.evaluate("window.__pwned") is None
    assert not dialogs


def test_narrow_screen(page_url):
    browser, url = page_url
    page = browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True)
    page.goto(url + "/?q=" + PROMPT.replace(" ", "+"))
    _wait_answer(page, 0)
    assert page.locator("#cards .card").count() == 10
    assert page.evaluate("document.documentElement.scrollWidth") <= 361  # no horizontal scrolling
    assert page.locator("#params-details").get_attribute("open") is None  # panel folded, one tap away
    box = page.locator("#cards .card").first.bounding_box()
    assert box["width"] > 300  # cards use the whole width
    page.click("#params-details summary")
    assert page.locator("#param-beta").is_visible()
