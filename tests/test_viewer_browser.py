"""The tree viewer in a real headless Chromium, with every non-file request blocked.

Needs the Debian package `chromium` and the Python package `playwright` (`.ci/install_browser.sh`
installs both; `playwright install` cannot download browsers here, so we drive the system one).
Set PLATEAU_SCREENSHOT_DIR to also save the screenshot there (e.g. `docs/` for `docs/viewer.png`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from viewer_trees import INJECTION, big_tree, small_tree, write_run

from search.view import main

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: run .ci/install_browser.sh")
expect = sync_api.expect
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH: run .ci/install_browser.sh", allow_module_level=True)

OFFLINE_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions"]


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_run(tmp_path_factory.mktemp("run"), {
        "iter_000/cd_small": small_tree(),
        "iter_001/cd_other": small_tree("cd_other", "tot"),
        "iter_001/cd_big": big_tree(),
    })
    assert main([str(run)]) == 0
    return run / "tree_viewer.html"


@pytest.fixture
def page(viewer: Path) -> Iterator[sync_api.Page]:
    """The viewer, loaded; afterwards, it raised no script error and asked for nothing
    outside itself."""
    blocked, errors = [], []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 800})
        page = context.new_page()

        def only_local(route: sync_api.Route) -> None:
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(viewer.as_uri())
        expect(page.locator("body")).to_have_attribute("data-ready", "1")
        yield page
        browser.close()
    assert errors == []
    assert blocked == []


def row(page: sync_api.Page, node: int) -> sync_api.Locator:
    return page.locator(f'#tree .node[data-id="{node}"] > .row')


def screenshot(page: sync_api.Page, tmp_path: Path, name: str) -> None:
    """A real PNG of what is on screen; also into PLATEAU_SCREENSHOT_DIR when it is set."""
    page.screenshot(path=str(tmp_path / name))
    assert (tmp_path / name).stat().st_size > 10_000
    if shot_dir := os.environ.get("PLATEAU_SCREENSHOT_DIR"):
        Path(shot_dir).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shot_dir) / name))


def open_problem(page: sync_api.Page, problem: str) -> None:
    page.locator(f'#problems li[data-problem="{problem}"]').click()
    expect(page.locator("body")).to_have_attribute("data-problem", problem)


def test_a_clicked_node_shows_its_step_and_the_correct_path_is_marked(page: sync_api.Page) -> None:
    assert page.locator("#problems li").evaluate_all("els => els.map(e => e.dataset.problem)") == [
        "iter_000/cd_small", "iter_001/cd_big", "iter_001/cd_other"]
    expect(page.locator("body")).to_have_attribute("data-problem", "iter_000/cd_small")
    row(page, 2).click()
    expect(page.locator("#detail-text")).to_have_text("15+7 = 22. Answer: 22\n")
    expect(page.locator("#detail")).to_contain_text("answer22")
    expect(page.locator("#detail-prefix")).to_have_text("3*5 = 15\n15+7 = 22. Answer: 22\n")
    expect(row(page, 1)).to_have_class(re.compile(r"\bon-correct-path\b"))
    assert "on-correct-path" not in (row(page, 5).get_attribute("class") or "")
    # A step that tries to close the script element is shown as text, never run.
    expect(row(page, 7).locator(".text")).to_have_text(INJECTION)
    assert page.evaluate("window.__pwned") is None


def test_collapsing_and_searching_the_outline(page: sync_api.Page, tmp_path: Path) -> None:
    row(page, 1).locator(".toggle").click()  # collapse: the children disappear; open: they come back
    expect(row(page, 2)).to_be_hidden()
    expect(row(page, 3)).to_be_hidden()
    row(page, 1).locator(".toggle").click()
    expect(row(page, 2)).to_be_visible()
    # The depth-3 match starts collapsed; the search opens its ancestors and marks it.
    expect(row(page, 4)).to_have_count(0)
    page.fill("#search", "FIFTY")
    expect(page.locator("#count")).to_have_text("1 match")
    expect(row(page, 4)).to_have_class(re.compile(r"\bmatch\b"))
    expect(row(page, 4)).to_be_visible()
    page.check("#filter")
    expect(row(page, 5)).to_have_count(0)  # not a match, not above one: filtered out
    expect(row(page, 4)).to_be_visible()
    page.uncheck("#filter")
    page.fill("#search", "")
    expect(page.locator("#count")).to_have_text("")
    row(page, 2).click()
    screenshot(page, tmp_path, "viewer.png")


def test_a_10201_node_tree_renders_lazily_and_still_answers_clicks(page: sync_api.Page) -> None:
    open_problem(page, "iter_001/cd_big")
    rendered = page.locator("#tree .node").count()
    assert 200 < rendered < 3000, rendered  # a first page of branches, not all 10 201 rows
    expect(row(page, 0).locator(".text")).to_contain_text("Use 1 2 3 4 to make 10.")
    more = page.locator('#tree .node[data-id="0"] > .children > .more')
    expect(more).to_have_text("show 100 more of 100")
    more.click()
    expect(more).to_have_count(0)
    last_branch = 1 + 299 * 34  # node id of "branch 299"
    expect(row(page, last_branch)).to_be_visible()
    expect(row(page, last_branch + 1)).to_have_count(0)  # beyond the automatic expansion: not built
    row(page, last_branch).locator(".toggle").click()
    row(page, last_branch + 33).click()
    expect(page.locator("#detail-text")).to_have_text("leaf 299.32\n")
    page.fill("#search", "leaf 299.3")
    expect(page.locator("#count")).to_have_text("4 matches")  # 299.3, 299.30, 299.31, 299.32


def dot(page: sync_api.Page, node: int) -> sync_api.Locator:
    return page.locator(f'#graph .gnode[data-id="{node}"]')


def transform(page: sync_api.Page) -> tuple[float, float, float]:
    """(x, y, scale) of the drawing's pan/zoom transform."""
    text = page.locator("#viewport").get_attribute("transform") or ""
    match = re.fullmatch(r"translate\(([-\d.e]+),([-\d.e]+)\) scale\(([-\d.e]+)\)", text)
    assert match, text
    return tuple(float(v) for v in match.groups())


def draw(page: sync_api.Page) -> None:
    page.click("#view-drawing")
    expect(page.locator("body")).to_have_attribute("data-view", "drawing")
    expect(page.locator("#tree")).to_be_hidden()


def test_the_drawing_marks_the_correct_path_and_colours_by_value_or_reward(page: sync_api.Page) -> None:
    draw(page)
    expect(page.locator("#graph .gnode")).to_have_count(8)  # every node a dot, every parent link an edge
    expect(page.locator("#graph .edge")).to_have_count(7)
    assert page.locator("#graph .edge.on-correct-path").evaluate_all("es => es.map(e => e.dataset.to)") == ["1", "2"]
    expect(dot(page, 2)).to_have_class(re.compile(r"\bok\b"))
    expect(dot(page, 4)).to_have_class(re.compile(r"\bbad\b"))
    # Colour by value: node 2 has the highest value (1.0), node 4 the lowest (0.0).
    fill = lambda n: dot(page, n).locator("circle").get_attribute("fill")  # noqa: E731
    assert (fill(2), fill(4), fill(7)) == ("hsl(120, 70%, 70%)", "hsl(0, 70%, 70%)", "#e4e4e4")  # 7: NaN value
    page.select_option("#colour", "reward")  # node 1: one correct terminal of two below it
    assert (fill(1), fill(2)) == ("hsl(60, 70%, 70%)", "hsl(120, 70%, 70%)")
    expect(dot(page, 7).locator("text")).to_have_text(INJECTION[:23] + "…")  # shown as text, never run


def test_the_drawing_zooms_pans_and_opens_a_clicked_dot(page: sync_api.Page, tmp_path: Path) -> None:
    draw(page)
    x0, y0, k0 = transform(page)
    page.click("#zoom-in")
    assert transform(page)[2] == pytest.approx(k0 * 1.25)
    box = page.locator("#graph").bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] - 40)  # empty corner: no node there
    page.mouse.wheel(0, -300)
    expect(page.locator("#viewport")).not_to_have_attribute("transform", re.compile(rf"scale\({k0 * 1.25}\)$"))
    x1, y1, k1 = transform(page)
    assert k1 > k0 * 1.25
    page.mouse.down()  # a drag pans by the distance dragged
    page.mouse.move(box["x"] + 140, box["y"] + box["height"] - 10, steps=5)
    page.mouse.up()
    x2, y2, k2 = transform(page)
    assert (x2 - x1, y2 - y1, k2) == (pytest.approx(100), pytest.approx(30), k1)
    # Clicking a dot after the pan fills the node panel, as a click on its outline row does.
    dot(page, 2).locator("circle").click()
    expect(page.locator("#detail-text")).to_have_text("15+7 = 22. Answer: 22\n")
    expect(dot(page, 2)).to_have_class(re.compile(r"\bselected\b"))
    page.fill("#search", "FIFTY")
    expect(dot(page, 4)).to_have_class(re.compile(r"\bmatch\b"))
    page.fill("#search", "")
    page.click("#zoom-fit")
    screenshot(page, tmp_path, "viewer_tree.png")


def test_the_drawing_of_a_10201_node_tree_stops_at_3000_breadth_first(page: sync_api.Page) -> None:
    draw(page)
    open_problem(page, "iter_001/cd_big")
    expect(page.locator("#drawn")).to_have_text("3000 of 10201 nodes drawn (breadth first)")
    expect(page.locator("#graph .gnode")).to_have_count(3000)
    page.click("#view-outline")
    expect(row(page, 0)).to_be_visible()
