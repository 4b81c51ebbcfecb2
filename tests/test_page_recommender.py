"""The page as a recommender, in a real browser on the real ML-100k (dotbias, fast recipe).

What a newcomer met in their first hour, each checked here: lists that barely personalise (a ranking
model beside the rating model orders them), "popular" that was not the most rated, a jargon why,
a layout with holes, an unlabelled map, no existing users, filters or "not interested", stars fixed
at five. Screenshots of each panel at 1280 and 390 px go to tests/.artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from collabkit.service import create_app
from tests.test_page import ARGS, ARTIFACTS, CHROMIUM, serving

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/setup.sh (it installs Debian's chromium)"
)

ALIENS, TOY_STORY, TITANIC = "Aliens (1986)", "Toy Story (1995)", "Titanic (1997)"
PANELS = ("rate", "recs-card", "user", "find", "map-section", "biases", "training", "settings")


@pytest.fixture(scope="module")
def ml_model(ml100k: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A dotbias model of ML-100k with the fast recipe (about a second on one core)."""
    from collabkit.workflows import TrainConfig, train

    out = tmp_path_factory.mktemp("ml100k") / "model"
    train(ml100k, TrainConfig(model="dotbias"), data_name="ml-100k", out=out, log=None)
    return out, ml100k


@pytest.fixture(scope="module")
def ml_url(ml_model: tuple[Path, pd.DataFrame]) -> Iterator[str]:
    folder, table = ml_model
    items = table.drop_duplicates("item")
    genres = dict(zip(items["item"].tolist(), items["genres"].astype(str).tolist(), strict=True))
    with serving(create_app(folder, genres=genres)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def open_page(browser: Any, url: str, width: int = 1280, height: int = 900) -> tuple[Any, list[str]]:
    """The page at `width`, settled (model line, list and map drawn); and a list collecting problems."""
    phone = width < 500
    page = browser.new_page(
        viewport={"width": width, "height": height}, device_scale_factor=2 if phone else 1, is_mobile=phone
    )
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.set_default_timeout(10_000)
    page.goto(url + "/")
    page.wait_for_function("() => document.getElementById('model-line').textContent.includes('model')")
    settle(page)
    return page, problems


def settle(page: Any) -> None:
    page.wait_for_function(
        "() => document.querySelectorAll('#recs li').length > 0"
        " && !document.getElementById('recs').hasAttribute('aria-busy')"
    )


def rec_titles(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#recs li .rec-title").all_inner_texts()]


def wait_heading(page: Any, text: str) -> None:
    page.wait_for_function("t => document.getElementById('recs-h').textContent.includes(t)", arg=text)
    settle(page)


def rate(page: Any, title: str, stars: float) -> None:
    """Search `title` in the rate box and give it `stars`; wait for the list that follows."""
    page.fill("#rate-q", title.split(" (")[0])
    row = page.locator(f"#rate-results li[data-item]:has-text({title!r})").first
    row.wait_for()
    with page.expect_response(lambda r: r.url.endswith("/recommend") and r.request.method == "POST"):
        row.locator(f"button[data-stars='{stars:g}']").click()
    settle(page)


def clear_ratings(page: Any) -> None:
    while page.locator("#rated li.chip button").count():
        page.locator("#rated li.chip button").first.click()
    wait_heading(page, "Popular")


def shoot(page: Any, name: str, width: int) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for panel in PANELS:
        loc = page.locator(f"#{panel}")
        if loc.is_visible():
            loc.screenshot(path=str(ARTIFACTS / f"{name}-{panel}-{width}.png"))


# -- personalised lists, popular, the why ----------------------------------------------------------


def test_opposite_users_get_different_lists_in_plain_words(ml_url: str, browser: Any) -> None:
    page, problems = open_page(browser, ml_url)
    try:
        rate(page, ALIENS, 5)
        rate(page, "Terminator, The (1984)", 5)
        rate(page, "Sense and Sensibility (1995)", 1)
        action = rec_titles(page)
        source = page.inner_text("#recs-source")
        assert "easeknn" in source and "dotbias model's predicted rating" in source, source
        clear_ratings(page)
        rate(page, "Sense and Sensibility (1995)", 5)
        rate(page, TITANIC, 5)
        rate(page, ALIENS, 1)
        romance = rec_titles(page)
        shared = set(action) & set(romance)
        print(f"opposite users share {len(shared)} of 10: {sorted(shared)}")
        assert len(action) == len(romance) == 10 and len(shared) <= 3, (action, romance)

        # the newcomer's own three: the why in plain words, naming the liked titles nearest each item
        clear_ratings(page)
        rate(page, ALIENS, 5)
        rate(page, TOY_STORY, 5)
        rate(page, TITANIC, 1)
        whys = [str(t) for t in page.locator("#recs li .why").all_inner_texts()]
        assert len(whys) == 10 and all(w.startswith("because you liked") for w in whys), whys
        assert all("Titanic" not in w for w in whys)  # rated 1: not a reason to like anything
        assert not any(j in " ".join(whys) for j in ("bias", "closest", "−0.", "0.")), whys
        assert len(set(whys)) >= 2, whys  # different items, different reasons where the data says so
        stars = page.locator("#recs li .score").all_inner_texts()
        assert all(s.endswith("★ predicted") for s in stars), stars
        shoot(page, "rec", 1280)
        assert problems == [], problems
    finally:
        page.close()


def test_popular_is_the_most_rated(ml_url: str, ml_model: tuple[Path, pd.DataFrame], browser: Any) -> None:
    from collabkit.recommend import Recommender

    rec = Recommender.load(ml_model[0])
    counts = rec.item_counts.numpy()
    top = [rec.title(rec.items[int(i)]) for i in np.argsort(-counts, kind="stable")[:10]]
    page, problems = open_page(browser, ml_url)
    try:
        assert page.inner_text("#recs-h").startswith("Popular: the most rated movies")
        assert "the most training ratings: a count" in page.inner_text("#recs-source")
        assert rec_titles(page) == top
        first = page.locator("#recs li .score").first.inner_text()
        assert first.startswith(f"{int(counts.max()):,} ratings"), first
        assert "1,655 movies, 943 users" in page.inner_text("#model-line")
        assert problems == [], problems
    finally:
        page.close()


# -- an existing user, filters, not interested -------------------------------------------------------


def test_existing_user_filters_and_not_interested(
    ml_url: str, ml_model: tuple[Path, pd.DataFrame], browser: Any
) -> None:
    table = ml_model[1]
    genre_of = dict(zip(table["title"], table["genres"].astype(str), strict=False))
    page, problems = open_page(browser, ml_url)
    try:
        page.fill("#user-q", "42")
        page.locator("#user-results button[data-user='42']").click()
        wait_heading(page, "user 42")
        history = page.locator("#user-history .history li")
        assert history.count() > 5 and "User 42's ratings" in page.inner_text("#history-h")
        rated = {t.split("\n")[0] for t in history.all_inner_texts()}
        assert not rated & set(rec_titles(page))
        page.select_option("#f-genre", "Comedy")
        page.fill("#f-year-min", "1990")
        page.fill("#f-min-count", "50")
        page.wait_for_function(
            "() => { const t = [...document.querySelectorAll('#recs li .rec-title')];"
            " return t.length === 10 && t.every(b => /\\((199\\d)\\)$/.test(b.textContent)); }"
        )
        settle(page)
        titles = rec_titles(page)
        assert all("Comedy" in genre_of[t].split("|") for t in titles), titles
        gone = titles[0]
        page.locator("#recs li").first.locator("button.nope").click()
        page.wait_for_function(
            "t => ![...document.querySelectorAll('#recs li .rec-title')].some(b => b.textContent === t)",
            arg=gone,
        )
        settle(page)
        assert gone in page.inner_text("#nope-line") and gone not in rec_titles(page)
        page.locator("#user-history button").click()  # back to your own: still left out of popular
        wait_heading(page, "Popular")
        assert gone not in rec_titles(page)
        shoot(page, "user", 1280)
        assert problems == [], problems
    finally:
        page.close()


# -- layout ------------------------------------------------------------------------------------------

LAYOUT = """() => {
  const main = document.getElementById('main').getBoundingClientRect();
  const box = id => document.getElementById(id).getBoundingClientRect();
  const rows = [['rate', 'recs-card'], ['user', 'find']].map(([a, b]) => [box(a), box(b)]);
  const cut = [...document.querySelectorAll('.results')]
    .filter(l => l.scrollHeight > l.clientHeight + 1).map(l => l.id);
  const titled = [...document.querySelectorAll('#recs li')].filter(li => li.querySelector('.rec-title'));
  const wrapped = titled.filter(li => {
    const top = li.querySelector('.rec-title').getBoundingClientRect().top;
    return Math.abs(top - li.getBoundingClientRect().top) > 14;
  }).length;
  const texts = [...document.querySelectorAll('#curve svg text')].map(t => t.getBoundingClientRect().height);
  return {mainRight: main.right, cut, wrapped, smallestText: Math.min(...texts),
          rows: rows.map(([a, b]) => ({aRight: a.right, bLeft: b.left, bRight: b.right,
                                       aTop: a.top, bTop: b.top}))};
}"""


def test_desktop_layout_fills_the_width(ml_url: str, browser: Any) -> None:
    page, problems = open_page(browser, ml_url)
    try:
        page.wait_for_selector("#curve svg")
        got = page.evaluate(LAYOUT)
        for row in got["rows"]:  # two cards side by side, the right one reaching the right edge
            assert abs(row["aTop"] - row["bTop"]) < 2 and row["bLeft"] > row["aRight"], got
            assert got["mainRight"] - row["bRight"] < 40, got
        assert got["cut"] == [], got  # no search list cuts its last row in half
        assert got["wrapped"] == 0, got  # list numbers stay on the title's line
        assert got["smallestText"] >= 11, got  # the training chart's axis text is readable
        page.screenshot(path=str(ARTIFACTS / "rec-page-1280.png"), full_page=True)
        shoot(page, "rec", 1280)
        assert problems == [], problems
    finally:
        page.close()


MAP_CHECK = """() => {
  const m = window.collabkitMap, c = document.getElementById('map');
  const w = c.clientWidth, h = c.clientHeight, p = m.placed;
  let overlaps = 0;
  for (let a = 0; a < p.length; a++) for (let b = a + 1; b < p.length; b++) {
    const r = p[a], q = p[b];
    if (r.x < q.x + q.w && q.x < r.x + r.w && r.y < q.y + q.h && q.y < r.y + r.h) overlaps++;
  }
  const outside = p.filter(r => r.x < 0 || r.y < 0 || r.x + r.w > w || r.y + r.h > h).length;
  const xs = p.map(r => m.toScreen(r.i).x), ys = p.map(r => m.toScreen(r.i).y);
  return {n: p.length, overlaps, outside, spreadX: (Math.max(...xs) - Math.min(...xs)) / w,
          spreadY: (Math.max(...ys) - Math.min(...ys)) / h, titles: p.map(r => r.title)};
}"""


@pytest.mark.parametrize("width,height", [(1280, 900), (390, 844)])
def test_the_map_is_labelled_and_readable(ml_url: str, browser: Any, width: int, height: int) -> None:
    page, problems = open_page(browser, ml_url, width, height)
    try:
        page.locator("#map").scroll_into_view_if_needed()
        page.wait_for_function("() => window.collabkitMap.placed.length > 0")
        got = page.evaluate(MAP_CHECK)
        assert got["n"] >= (12 if width < 500 else 30), got
        assert got["overlaps"] == 0 and got["outside"] == 0, got
        assert got["spreadX"] > 0.6 and got["spreadY"] > 0.5, got  # the points fill the map
        assert any("Star Wars" in t for t in got["titles"])  # the most rated title is labelled
        # a title's neighbours: labelled, inside the map, not overlapping, the tip in the corner
        page.fill("#find-q", "star wars")
        page.locator("#find-results button:has-text('Star Wars (1977)')").click()
        page.wait_for_selector("#neighbours-table tbody tr")
        page.locator("#map").scroll_into_view_if_needed()
        marked = page.evaluate(MAP_CHECK)
        assert marked["overlaps"] == 0 and marked["outside"] == 0, marked
        assert any("Star Wars" in t for t in marked["titles"]), marked
        s = page.evaluate(
            "() => { const m = window.collabkitMap, s = m.toScreen(3); return {x: s.x, y: s.y}; }"
        )
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + s["x"], box["y"] + s["y"])
        page.wait_for_selector("#map-tip:not([hidden])")
        tip = page.locator("#map-tip").bounding_box()
        assert tip["y"] - box["y"] < 20 and box["x"] + box["width"] - (tip["x"] + tip["width"]) < 20, tip
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.locator("#map-section").screenshot(path=str(ARTIFACTS / f"rec-map-{width}.png"))
        if width < 500:
            page.screenshot(path=str(ARTIFACTS / "rec-page-390.png"), full_page=True)
            shoot(page, "rec", 390)
        assert problems == [], problems
    finally:
        page.close()


# -- other scales, other families ---------------------------------------------------------------------


def scaled_table(kind: str) -> pd.DataFrame:
    """`ratings_table` on a 1-10 scale (books) or 0.5-5 in half stars (ml-latest-small's)."""
    from tests.test_service import ratings_table

    table = ratings_table()
    if kind == "ten":
        table["rating"] = (table["rating"] * 2 - np.where(table["user"] % 2 == 0, 1, 0)).astype("float32")
        table["title"] = [f"Book {i}" for i in table["item"]]
    else:
        table["rating"] = (
            (table["rating"] - np.where(table["user"] % 2 == 0, 0.5, 0)).clip(0.5).astype("float32")
        )
    return table


@pytest.mark.parametrize("kind", ["ten", "half"])
def test_stars_follow_the_models_scale(kind: str, browser: Any, tmp_path: Path) -> None:
    from collabkit.workflows import TrainConfig, train

    table = scaled_table(kind)
    name = "books" if kind == "ten" else "ml-latest-small"
    train(table, TrainConfig(model="dotbias", epochs=2), data_name=name, out=tmp_path / "m", log=None)
    with serving(create_app(tmp_path / "m")) as url:
        page, problems = open_page(browser, url, 390, 844)
        try:
            noun = "items" if kind == "ten" else "movies"
            assert page.inner_text("#rate-h") == f"Rate a few {noun}"
            row = page.locator("#rate-results li[data-item]").first
            values = row.locator("button[data-stars]").evaluate_all("bs => bs.map(b => b.dataset.stars)")
            if kind == "ten":
                assert values == [str(v) for v in range(1, 11)], values
            else:
                assert values == [f"{v / 2:g}" for v in range(1, 11)], values
            title = row.locator(".title").inner_text().split(" (")[0]
            row.locator(f"button[data-stars='{values[-2]}']").click()
            wait_heading(page, "Recommended for you")
            assert page.locator("#rated li.chip .score").inner_text() == f"{values[-2]} ★", title
            scores = page.locator("#recs li .score").all_inner_texts()
            if kind == "ten":
                assert all(s.endswith("★ predicted (of 10)") for s in scores), scores
                assert all(1 <= float(s.split()[0]) <= 10 for s in scores), scores
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.locator("#rate").screenshot(path=str(ARTIFACTS / f"rec-stars-{kind}-390.png"))
            assert problems == [], problems
        finally:
            page.close()


def test_a_ranking_models_page_has_no_empty_cards(browser: Any, tmp_path: Path) -> None:
    from tests.test_service import ratings_table
    from tests.test_service_contract import train_family

    train_family("ease", tmp_path / "ease", ratings_table())
    with serving(create_app(tmp_path / "ease")) as url:
        page, problems = open_page(browser, url)
        try:
            text = page.inner_text("body")
            assert "NaN" not in text and "undefined" not in text and "null" not in text
            assert not page.locator("#biases").is_visible() and not page.locator("#training").is_visible()
            settings = page.inner_text("#settings-list")
            assert (
                "in closed form" in settings and "ranking scores" in settings and "epochs\n" not in settings
            )
            assert "held-out ranking figures" in page.inner_text("#figures-list")
            page.screenshot(path=str(ARTIFACTS / "rec-ease-1280.png"), full_page=True)
            assert problems == [], problems
        finally:
            page.close()


def test_the_report_reads_on_a_phone(
    ml_model: tuple[Path, pd.DataFrame], browser: Any, tmp_path: Path
) -> None:
    """The report of the ML-100k model: no wider than a phone, counts with separators, the items that
    have training ratings (as the page counts them), no empty settings."""
    from collabkit.recommend import Recommender
    from collabkit.report import write_report

    files = write_report(Recommender.load(ml_model[0]), tmp_path / "report", source=ml_model[0])
    text = files.html.read_text(encoding="utf-8")
    assert "80,000" in text and "100,000" in text and ">80000<" not in text
    assert "items with training ratings</td><td>1,655<" in text.replace('<td class="num">', "<td>"), text[
        :3000
    ]
    assert "{}" not in text and "options" not in text
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    try:
        page.goto(files.html.as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "rec-report-390.png"), full_page=False)
    finally:
        page.close()
