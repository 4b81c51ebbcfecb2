"""The web page in a real browser (Debian's headless chromium, driven by Playwright).

Search a title and open its neighbours, rate three movies (one with the keyboard) and see the
recommendations change after each, hover and click the map, zoom it with a key; screenshots at
desktop and phone widths go to tests/.artifacts/ (git-ignored). And the first screen of every
registered family, whatever it can answer.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from collabkit.models import model_names
from collabkit.service import create_app
from tests.test_service import ratings_table, train_tiny_model

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup.sh (it installs Debian's chromium)"
)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` on a free port of 127.0.0.1, in a thread of this process: yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start within 20 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dotbias service, with genres for the map."""
    folder, table = train_tiny_model(tmp_path_factory.mktemp("page"))
    items = table.drop_duplicates("item")
    with serving(create_app(folder, genres=dict(zip(items["item"], items["genres"], strict=True)))) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def recs_text(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#recs li").all_inner_texts()]


def search(page: Any, box: str, results: str, text: str) -> None:
    """Type `text` into a search box and wait until every listed title contains it (not the list before)."""
    page.fill(box, text)
    page.wait_for_function(
        """([sel, q]) => { const rows = [...document.querySelectorAll(sel + ' li')];
             return rows.length > 0 && rows.every(r => r.textContent.toLowerCase().includes(q)); }""",
        arg=[results, text.lower()],
    )


def wait_for_change(page: Any, before: list[str], timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = recs_text(page)
        if now and now != before and page.locator("#recs[aria-busy]").count() == 0:
            return now
        time.sleep(0.05)
    raise AssertionError(f"the recommendations did not change within {timeout} s: {before}")


def test_search_rate_and_map(base_url: str, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.set_default_timeout(10_000)
    page.goto(base_url + "/")
    # waits are arrow functions: a bare expression is compiled by eval when it must be polled, which
    # the page's Content-Security-Policy (no 'unsafe-eval') refuses on a slow machine
    page.wait_for_function("() => document.getElementById('model-line').textContent.includes('dotbias')")
    assert "45 items" in page.inner_text("#model-line")

    # Search a movie and open its neighbours.
    search(page, "#find-q", "#find-results", "FILM 12")
    found = page.locator("#find-results li").all_inner_texts()
    assert len(found) == 8 and all("Film 12" in t for t in found)  # 120..129 match, the 8 most rated shown
    first = page.locator("#find-results button").first
    title = first.locator("span").first.inner_text()
    first.click()
    page.wait_for_selector("#neighbours-table tbody tr")
    assert page.inner_text("#neighbours-h") == f"Nearest to {title}"
    rows = page.locator("#neighbours-table tbody tr")
    assert 1 <= rows.count() <= 10
    sims = [float(t) for t in page.locator("#neighbours-table tbody td:nth-child(2)").all_inner_texts()]
    assert sims == sorted(sims, reverse=True)
    assert title not in page.locator("#neighbours-table tbody td:first-child").all_inner_texts()

    # Rate three movies: the recommendations change after each, and say why.
    page.wait_for_selector("#recs li")
    popular = recs_text(page)
    assert len(popular) == 10
    search(page, "#rate-q", "#rate-results", "film 11")
    page.focus("#rate-q")  # the first with the keyboard: ArrowDown into the list, Tab to 4 stars, Enter
    page.keyboard.press("ArrowDown")
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.dataset.stars") == "4"
    page.keyboard.press("Enter")
    after_one = wait_for_change(page, popular)
    page.locator("#rate-results li[data-item]").nth(1).locator("button[data-stars='1']").click()
    after_two = wait_for_change(page, after_one)
    search(page, "#rate-q", "#rate-results", "film 13")
    page.locator("#rate-results li[data-item]").nth(0).locator("button[data-stars='5']").click()
    wait_for_change(page, after_two)
    assert page.locator("#rated li.chip").count() == 3, (
        page.locator("#rated").inner_text() + " | " + page.locator("#rate-results").inner_text()
    )
    assert "3 ratings" in page.inner_text("#recs-h")
    rated = [t.split("★")[0].strip() for t in page.locator("#rated li.chip").all_inner_texts()]
    recommended = page.locator("#recs li .rec-title").all_inner_texts()
    assert len(recommended) == 10 and not set(rated) & set(recommended)  # rated films are not recommended
    whys = page.locator("#recs li .why").all_inner_texts()  # in plain words: the liked titles nearest
    assert len(whys) == 10 and all("liked" in w and "bias" not in w for w in whys), whys
    liked = [
        t.split(" (")[0] for t in page.locator("#rated li.chip").all_inner_texts() if "4 ★" in t or "5 ★" in t
    ]
    assert any(r in w for r in liked for w in whys), (liked, whys)

    # The map: hover a point for its title, click it for its neighbours, zoom with a key.
    page.locator("#map").scroll_into_view_if_needed()
    page.wait_for_function("() => window.collabkitMap.points.length > 0")
    point = page.evaluate(
        "() => { const m = window.collabkitMap, s = m.toScreen(0);"
        " return {x: s.x, y: s.y, title: m.points[0].title}; }"
    )
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_selector("#map-tip:not([hidden])")
    assert point["title"] in page.inner_text("#map-tip")
    page.locator("#map-section").screenshot(path=str(ARTIFACTS / "page-map-hover.png"))
    page.screenshot(path=str(ARTIFACTS / "page-desktop.png"), full_page=True)
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_function(
        "t => document.getElementById('neighbours-h')?.textContent === 'Nearest to ' + t", arg=point["title"]
    )
    page.focus("#map")
    page.keyboard.press("+")
    assert page.evaluate("window.collabkitMap.view.scale") > 1
    page.select_option("#map-colour", "genre:Horror")
    assert "Horror" in page.inner_text("#map-legend")
    assert page.locator("#curve svg polyline").count() == 2  # train and valid loss per epoch
    assert problems == []
    page.close()


def test_phone_width(base_url: str, browser: Any) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page.set_default_timeout(10_000)
    page.goto(base_url + "/")
    page.wait_for_selector("#recs li")
    page.wait_for_function("() => window.collabkitMap.points.length > 0")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    page.screenshot(path=str(ARTIFACTS / "page-phone.png"), full_page=True)
    print(f"screenshots in {ARTIFACTS}")
    page.close()


SETTLED = """name => {
  const line = document.getElementById('model-line').textContent;
  const recs = document.getElementById('recs');
  const listed = recs.querySelectorAll('li').length > 0 && !recs.hasAttribute('aria-busy');
  const mapped = window.collabkitMap.points.length > 0
    || document.getElementById('map-note').textContent.startsWith('No map');
  const biases = document.querySelectorAll('#bias-high li').length > 0
    || document.querySelector('#biases .two').hidden;
  const found = document.querySelectorAll('#find-results li').length > 0;
  return line.includes(name) && listed && mapped && biases && found;
}"""


@pytest.mark.parametrize("name", model_names())
def test_first_screen_of_every_family(name: str, browser: Any, tmp_path: Path) -> None:
    """Each registered family's page loads: no console error, no request the family cannot answer,
    no "NaN" or "undefined" shown; a section the family cannot fill says why."""
    from collabkit.models import family
    from tests.test_service_contract import train_family

    ARTIFACTS.mkdir(exist_ok=True)
    table = ratings_table()
    train_family(name, tmp_path / name, table)
    caps = family(name).capabilities()
    items = table.drop_duplicates("item")
    app = create_app(tmp_path / name, genres=dict(zip(items["item"], items["genres"], strict=True)))
    with serving(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.set_default_timeout(10_000)
        try:
            page.goto(url + "/")
            page.wait_for_function(SETTLED, arg=name)
            page.screenshot(path=str(ARTIFACTS / f"page-first-{name}.png"), full_page=True)
            text = page.inner_text("body")
            assert "NaN" not in text and "undefined" not in text, text
            assert problems == [], problems
            assert len(recs_text(page)) == 10
            assert (page.evaluate("window.collabkitMap.points.length") > 0) == caps.item_vectors
            if not caps.item_vectors:
                assert f"{name} model has no item vectors" in page.inner_text("#map-note")
                assert not page.locator("#map-section .map-tools").is_visible()
            if not caps.biases:
                assert f"{name} model has no item biases" in page.inner_text("#biases-note")
                assert not page.locator("#biases .two").is_visible()
            scores = page.locator("#recs li .score").all_inner_texts()  # popular: counts, not predictions
            assert all(" ratings · mean " in s and "predicted" not in s for s in scores), scores
            assert page.inner_text("#recs-h").startswith("Popular: the most rated")
        finally:
            page.close()


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
def test_login_with_a_key_then_the_page_works(width: int, height: int, browser: Any, tmp_path: Path) -> None:
    """A keyed service: the page's login form (a wrong key first), then the page itself; the key is in
    no URL the browser requested and in no cookie."""
    ARTIFACTS.mkdir(exist_ok=True)
    key = 'k;ey "ü"'
    folder, _ = train_tiny_model(tmp_path)
    with serving(create_app(folder, api_key=key)) as url:
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(10_000)
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        try:
            page.goto(url + "/")
            page.wait_for_selector("#api-key")
            page.screenshot(path=str(ARTIFACTS / f"login-{width}.png"), full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.fill("#api-key", "wrong")
            page.press("#api-key", "Enter")
            page.wait_for_selector("p.error")
            assert "not the key" in page.inner_text("p.error")
            page.fill("#api-key", key)
            page.click("button[type=submit]")
            page.wait_for_selector("#recs li")
            assert "dotbias model" in page.inner_text("#model-line")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(ARTIFACTS / f"page-after-login-{width}.png"), full_page=True)
            cookies = context.cookies()
            assert [c["name"] for c in cookies] == ["collabkit_session"] and cookies[0]["httpOnly"]
            assert not [c for c in cookies if "ey" in c["value"] or "%" in c["value"]]
            assert not [u for u in urls if "k%3Bey" in u or "api_key" in u or "ey%20" in u], urls
        finally:
            context.close()


def test_a_new_user_states_who_they_are(browser: Any, tmp_path: Path) -> None:
    """A hybrid model's page asks "About you" for its user side columns; a choice alone gives that
    kind of user's list (group "a" likes genre X), and the heading and reasons say so."""
    from collabkit import CollabDataLoaders, collab_learner
    from tests.test_hybrid import side_table

    table = side_table()
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(table, valid_pct=0.1, seed=1, bs=64)
    learn = collab_learner(
        dls, model="hybrid", y_range=(0.5, 5.5), settings={"user_columns": ["group", "age"]},
        show_progress=False, log=None,
    )  # fmt: skip
    learn.fit_one_cycle(8, 1e-2, wd=0.01)
    folder = learn.export(str(tmp_path / "hybrid"))
    genres = dict(zip(table["item"], table["genres"], strict=False))
    for width, height in ((1280, 900), (390, 844)):
        with serving(create_app(folder)) as url:
            page = browser.new_page(viewport={"width": width, "height": height})
            problems: list[str] = []
            page.on("pageerror", lambda e, seen=problems: seen.append(f"page error: {e}"))
            page.set_default_timeout(10_000)
            page.goto(url + "/")
            page.wait_for_selector("#about:not([hidden]) #about-group")
            assert page.locator("#about-age").get_attribute("type") == "number"
            page.fill("#f-min-count", "1")
            page.select_option("#about-group", "a")
            page.wait_for_function("() => document.getElementById('recs-h').textContent.includes('group a')")
            page.wait_for_function("() => !document.querySelector('#recs[aria-busy]')")
            items = page.eval_on_selector_all("#recs li[data-item]", "rows => rows.map(r => r.dataset.item)")
            assert len(items) == 10 and sum("X" in genres[i] for i in items) >= 9, items
            assert "people like you (group a)" in page.inner_text("#recs li")
            assert (
                page.evaluate("() => document.documentElement.scrollWidth") <= width
            )  # nothing off the side
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("#rate").screenshot(path=str(ARTIFACTS / f"page-about-{width}.png"))
            assert not problems, problems
            page.close()
