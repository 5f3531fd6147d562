"""The playground in a real browser: Debian's Chromium driven by Playwright (no browser download).

Needs `apt-get install -y chromium` and `pip install playwright`; skipped when either is missing.
Screenshots land in test-artifacts/.
"""

import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from hfllm.app import models as m
from test_app import serve

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    sync_playwright = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not installed (pip install playwright)"),
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def app(tiny_pretrained, tmp_path_factory):
    lm = m.load_model(tiny_pretrained)
    feedback = tmp_path_factory.mktemp("browser") / "feedback.jsonl"
    demo, url = serve({"tiny": lm, "tiny-copy": lm}, None, feedback)
    yield url, feedback
    demo.close()


@pytest.fixture(scope="module")
def browser():
    executable = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(app[0], wait_until="domcontentloaded")  # not networkidle: Gradio keeps a connection open
    page.locator("#chat-input textarea").wait_for()
    yield page
    page.close()


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_chat_streams_tokens_into_the_chatbot(page):
    page.get_by_text("Sampling", exact=True).first.click()  # open the accordion, fix a seed for the record
    page.get_by_label("seed (empty = random)").first.fill("3")
    # Record every text the bot's message shows while it streams.
    page.evaluate("""() => {
        window.__seen = [];
        const box = document.querySelector('#chatbot');
        new MutationObserver(() => {
            const bots = box.querySelectorAll('[data-testid="bot"], .message.bot');
            if (bots.length) window.__seen.push(bots[bots.length - 1].innerText);
        }).observe(box, {subtree: true, childList: true, characterData: true});
    }""")
    page.locator("#chat-input textarea").fill("Tell me a story about a cat")
    page.locator("#chat-input textarea").press("Enter")
    expect(page.locator("#chatbot")).to_contain_text("Tell me a story about a cat")
    deadline = time.time() + 60
    while time.time() < deadline and page.locator("#chat-input textarea").input_value() != "":
        time.sleep(0.2)
    bot = page.locator('#chatbot [data-testid="bot"], #chatbot .message.bot').last
    expect(bot).not_to_have_text("", timeout=60_000)
    time.sleep(2)  # let the stream finish
    seen = [s.strip() for s in page.evaluate("window.__seen") if s.strip()]
    final = bot.inner_text().strip()
    shot(page, "chat")
    assert final and len(set(seen)) >= 2, seen  # several partial answers were shown, not one final block
    assert any(len(s) < len(final) and final.startswith(s[:10]) for s in seen)


def test_sampling_lab_draws_the_distribution(page):
    page.get_by_role("tab", name="Sampling lab").click()
    top_k = page.locator("#lab-top-k input[type=number]")
    top_k.fill("8")
    top_k.press("Tab")
    page.locator("#lab-show").click()
    expect(page.get_by_text("8 of the top 20 tokens survive")).to_be_visible()
    chart = page.locator("#plot-before canvas, #plot-before svg").first
    chart.wait_for()
    box = chart.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50
    page.locator("#lab-step").click()
    expect(page.get_by_text("tokens chosen so far")).to_be_visible()
    page.locator("#plot-after canvas, #plot-after svg").first.wait_for()
    time.sleep(1)  # vega draws after the element appears
    shot(page, "sampling-lab")


def test_compare_vote_appends_a_row(page, app):
    feedback = app[1]
    before = len(feedback.read_text().splitlines()) if feedback.exists() else 0
    page.get_by_role("tab", name="Compare", exact=True).click()
    page.locator("#cmp-prompt textarea").fill("What is 2 + 3?")
    page.locator("#cmp-go").click()
    expect(page.locator("#vote-status")).to_contain_text("Which answer is better", timeout=60_000)
    right = page.locator("#cmp-right textarea").input_value()
    page.locator("#vote-right").click()
    expect(page.locator("#vote-status")).to_contain_text("Saved: right preferred")
    shot(page, "compare")
    rows = [json.loads(line) for line in feedback.read_text().splitlines()]
    assert len(rows) == before + 1
    assert rows[-1]["prompt"] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert rows[-1]["chosen"] == [{"role": "assistant", "content": right}]


def test_compare_all_answers_with_every_model(page):
    page.get_by_role("tab", name="Compare all").click()
    page.locator("#all-go").click()
    expect(page.locator("#all-status")).to_contain_text("2 answers to the same prompt", timeout=60_000)
    shot(page, "compare-all")


def test_tokenizer_and_best_of_n_tabs_render(page):
    page.get_by_role("tab", name="Tokenizer").click()
    expect(page.locator("#tok-stats")).to_contain_text("tokens · 59 characters · 11 words")
    expect(page.locator("#tok-spans")).to_contain_text("ers")
    shot(page, "tokenizer")
    page.get_by_role("tab", name="Best-of-N").click()
    expect(page.locator("#no-reward")).to_contain_text("hfllm reward")


def test_confidence_and_attention_tabs_render(page):
    page.get_by_role("tab", name="Confidence").click()
    page.locator("#conf-go").click()
    expect(page.locator("#conf-truth")).to_contain_text("Truth:")
    expect(page.locator("#conf-spans")).to_contain_text("low confidence")
    shot(page, "confidence")
    page.get_by_role("tab", name="Attention").click()
    page.locator("#attention-go").click()
    expect(page.locator("#attention-note")).to_contain_text("Predicting the next token")
    expect(page.locator("#attention-bars canvas, #attention-bars svg").first).to_be_visible()
    shot(page, "attention")
