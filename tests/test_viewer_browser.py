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


class Page:
    """A page plus what it tried to fetch and which script errors it raised."""

    def __init__(self, page: sync_api.Page) -> None:
        self.page, self.blocked, self.errors = page, [], []


@pytest.fixture
def page(viewer: Path) -> Iterator[Page]:
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 800})
        holder = Page(context.new_page())

        def only_local(route: sync_api.Route) -> None:
            if route.request.url.startswith("file:"):
                route.continue_()
            else:
                holder.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        holder.page.on("pageerror", lambda e: holder.errors.append(str(e)))
        holder.page.goto(viewer.as_uri())
        sync_api.expect(holder.page.locator("body")).to_have_attribute("data-ready", "1")
        yield holder
        browser.close()


def row(page: sync_api.Page, node: int) -> sync_api.Locator:
    return page.locator(f'#tree .node[data-id="{node}"] > .row')


def test_viewer_in_a_browser(page: Page, tmp_path: Path) -> None:
    p, expect = page.page, sync_api.expect
    assert p.locator("#problems li").evaluate_all("els => els.map(e => e.dataset.problem)") == [
        "iter_000/cd_small", "iter_001/cd_big", "iter_001/cd_other"]
    expect(p.locator("body")).to_have_attribute("data-problem", "iter_000/cd_small")

    # Click a node: its step text and statistics fill the detail panel.
    row(p, 2).click()
    expect(p.locator("#detail-text")).to_have_text("15+7 = 22. Answer: 22\n")
    expect(p.locator("#detail")).to_contain_text("answer22")
    expect(p.locator("#detail-prefix")).to_have_text("3*5 = 15\n15+7 = 22. Answer: 22\n")
    # The path to the correct answer is highlighted, the wrong branch is not.
    expect(row(p, 1)).to_have_class(re.compile(r"\bon-correct-path\b"))
    assert "on-correct-path" not in (row(p, 5).get_attribute("class") or "")
    # A step that tries to close the script element is shown as text, never run.
    expect(row(p, 7).locator(".text")).to_have_text(INJECTION)
    assert p.evaluate("window.__pwned") is None

    # Collapse a subtree: its children disappear; open it again: they come back.
    row(p, 1).locator(".toggle").click()
    expect(row(p, 2)).to_be_hidden()
    expect(row(p, 3)).to_be_hidden()
    row(p, 1).locator(".toggle").click()
    expect(row(p, 2)).to_be_visible()

    # Search: the depth-3 match starts collapsed, the search opens its ancestors and marks it.
    expect(row(p, 4)).to_have_count(0)
    p.fill("#search", "FIFTY")
    expect(p.locator("#count")).to_have_text("1 match")
    expect(row(p, 4)).to_have_class(re.compile(r"\bmatch\b"))
    expect(row(p, 4)).to_be_visible()
    p.check("#filter")
    expect(row(p, 5)).to_have_count(0)  # not a match, not above one: filtered out
    expect(row(p, 4)).to_be_visible()
    p.uncheck("#filter")
    p.fill("#search", "")
    expect(p.locator("#count")).to_have_text("")
    row(p, 2).click()
    p.screenshot(path=str(tmp_path / "viewer.png"))
    if shot_dir := os.environ.get("PLATEAU_SCREENSHOT_DIR"):
        Path(shot_dir).mkdir(parents=True, exist_ok=True)
        p.screenshot(path=str(Path(shot_dir) / "viewer.png"))

    # Switch problem: the 10 201-node tree renders lazily and still answers clicks.
    p.locator('#problems li[data-problem="iter_001/cd_big"]').click()
    expect(p.locator("body")).to_have_attribute("data-problem", "iter_001/cd_big")
    rendered = p.locator("#tree .node").count()
    assert 200 < rendered < 3000, rendered  # a first page of branches, not all 10 201 rows
    expect(row(p, 0).locator(".text")).to_contain_text("Use 1 2 3 4 to make 10.")
    more = p.locator('#tree .node[data-id="0"] > .children > .more')
    expect(more).to_have_text("show 100 more of 100")
    more.click()
    expect(more).to_have_count(0)
    last_branch = 1 + 299 * 34  # node id of "branch 299"
    expect(row(p, last_branch)).to_be_visible()
    expect(row(p, last_branch + 1)).to_have_count(0)  # beyond the automatic expansion: not built
    row(p, last_branch).locator(".toggle").click()
    row(p, last_branch + 33).click()
    expect(p.locator("#detail-text")).to_have_text("leaf 299.32\n")
    p.fill("#search", "leaf 299.3")
    expect(p.locator("#count")).to_have_text("4 matches")  # 299.3, 299.30, 299.31, 299.32
    assert (tmp_path / "viewer.png").stat().st_size > 10_000

    assert page.errors == []
    assert page.blocked == []  # the page asked for nothing outside itself


def dot(page: sync_api.Page, node: int) -> sync_api.Locator:
    return page.locator(f'#graph .gnode[data-id="{node}"]')


def transform(page: sync_api.Page) -> tuple[float, float, float]:
    """(x, y, scale) of the drawing's pan/zoom transform."""
    text = page.locator("#viewport").get_attribute("transform") or ""
    match = re.fullmatch(r"translate\(([-\d.e]+),([-\d.e]+)\) scale\(([-\d.e]+)\)", text)
    assert match, text
    return tuple(float(v) for v in match.groups())


def test_the_drawing_pans_zooms_colours_and_opens_nodes(page: Page, tmp_path: Path) -> None:
    p, expect = page.page, sync_api.expect
    p.click("#view-drawing")
    expect(p.locator("body")).to_have_attribute("data-view", "drawing")
    expect(p.locator("#tree")).to_be_hidden()
    # Every node of the small tree is a dot, every parent link an edge; the correct path is marked.
    expect(p.locator("#graph .gnode")).to_have_count(8)
    expect(p.locator("#graph .edge")).to_have_count(7)
    assert p.locator("#graph .edge.on-correct-path").evaluate_all("es => es.map(e => e.dataset.to)") == ["1", "2"]
    expect(dot(p, 2)).to_have_class(re.compile(r"\bok\b"))
    expect(dot(p, 4)).to_have_class(re.compile(r"\bbad\b"))
    # Colour by value: node 2 has the highest value (1.0), node 4 the lowest (0.0).
    fill = lambda n: dot(p, n).locator("circle").get_attribute("fill")
    assert (fill(2), fill(4), fill(7)) == ("hsl(120, 70%, 70%)", "hsl(0, 70%, 70%)", "#e4e4e4")  # 7: NaN value
    p.select_option("#colour", "reward")  # node 1: one correct terminal of two below it
    assert (fill(1), fill(2)) == ("hsl(60, 70%, 70%)", "hsl(120, 70%, 70%)")
    expect(dot(p, 7).locator("text")).to_have_text(INJECTION[:23] + "…")  # shown as text, never run

    # Zoom (button, wheel) changes the scale; a drag pans by the distance dragged.
    x0, y0, k0 = transform(p)
    p.click("#zoom-in")
    assert transform(p)[2] == pytest.approx(k0 * 1.25)
    box = p.locator("#graph").bounding_box()
    p.mouse.move(box["x"] + 40, box["y"] + box["height"] - 40)  # empty corner: no node there
    p.mouse.wheel(0, -300)
    expect(p.locator("#viewport")).not_to_have_attribute("transform", re.compile(rf"scale\({k0 * 1.25}\)$"))
    x1, y1, k1 = transform(p)
    assert k1 > k0 * 1.25
    p.mouse.down()
    p.mouse.move(box["x"] + 140, box["y"] + box["height"] - 10, steps=5)
    p.mouse.up()
    x2, y2, k2 = transform(p)
    assert (x2 - x1, y2 - y1, k2) == (pytest.approx(100), pytest.approx(30), k1)

    # Clicking a dot after the pan fills the node panel, as a click on its outline row does.
    dot(p, 2).locator("circle").click()
    expect(p.locator("#detail-text")).to_have_text("15+7 = 22. Answer: 22\n")
    expect(dot(p, 2)).to_have_class(re.compile(r"\bselected\b"))
    p.fill("#search", "FIFTY")
    expect(dot(p, 4)).to_have_class(re.compile(r"\bmatch\b"))
    p.fill("#search", "")
    p.click("#zoom-fit")
    p.screenshot(path=str(tmp_path / "viewer_tree.png"))
    assert (tmp_path / "viewer_tree.png").stat().st_size > 10_000
    if shot_dir := os.environ.get("PLATEAU_SCREENSHOT_DIR"):
        p.screenshot(path=str(Path(shot_dir) / "viewer_tree.png"))

    # The 10 201-node tree: the first 3000 nodes breadth first, and it says so.
    p.locator('#problems li[data-problem="iter_001/cd_big"]').click()
    expect(p.locator("#drawn")).to_have_text("3000 of 10201 nodes drawn (breadth first)")
    expect(p.locator("#graph .gnode")).to_have_count(3000)
    p.click("#view-outline")
    expect(row(p, 0)).to_be_visible()
    assert page.errors == []
    assert page.blocked == []
