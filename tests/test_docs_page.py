"""`/docs` renders in a real browser, offline: Swagger UI reads the service's OpenAPI 3.1 and lists
its operations (Swagger UI 4 showed "Unable to render this definition" instead).

Debian's headless chromium through Playwright, no network; a screenshot goes to tests/.artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from collabkit.service import create_app
from tests.test_page import ARGS, ARTIFACTS, CHROMIUM, serving
from tests.test_service import train_tiny_model

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup.sh (it installs Debian's chromium)"
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder, _ = train_tiny_model(tmp_path_factory.mktemp("docs"))
    with serving(create_app(folder)) as url:
        yield url


def test_docs_render_every_operation(base_url: str) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            outside: list[str] = []
            page.on(
                "request",
                lambda r: outside.append(r.url) if not r.url.startswith((base_url, "data:")) else None,
            )
            page.set_default_timeout(20_000)
            page.goto(base_url + "/docs")
            page.wait_for_function(
                "() => document.querySelectorAll('.opblock').length > 0"
                " || document.body.innerText.includes('Unable to render')"
            )
            page.screenshot(path=str(ARTIFACTS / "docs.png"), full_page=False)
            text = page.inner_text("body")
            assert "Unable to render" not in text, text[:500]
            paths: Any = page.eval_on_selector_all(
                ".opblock",
                "els => els.map(e => [e.querySelector('.opblock-summary-method')?.textContent,"
                " e.querySelector('.opblock-summary-path')?.getAttribute('data-path')])",
            )
            shown = {(str(m).lower(), str(p)) for m, p in paths}
            assert {
                ("get", "/recommend"),
                ("post", "/recommend"),
                ("get", "/similar"),
                ("get", "/health"),
            } <= shown
            assert len(shown) >= 10, shown
            assert problems == [] and outside == [], (problems, outside)
        finally:
            browser.close()
