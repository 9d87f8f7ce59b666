"""The tree viewer's files: what `python -m search.view` reads, writes and refuses.
(The page's behaviour in a real browser is tested in test_viewer_browser.py.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from viewer_trees import INJECTION, big_tree, small_tree, write_run

from search.tree import SearchTree
from search.view import TreeFileError, load_trees, main, render_html, write_view


def page_data(page: str) -> dict:
    match = re.search(r'<script id="plateau-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "data element missing"
    return json.loads(match.group(1))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", {"iter_000/cd_small": small_tree(), "iter_001/cd_small": small_tree(),
                                        "iter_001/other": small_tree("other", "tot")})


def test_run_folder_trees_are_found_recursively_and_labelled_by_path(run: Path) -> None:
    labels = [label for label, _ in load_trees(run)]
    assert labels == ["iter_000/cd_small", "iter_001/cd_small", "iter_001/other"]


def test_page_is_self_contained_and_carries_every_tree(run: Path) -> None:
    [out] = write_view(run)
    assert out == run / "tree_viewer.html"
    page = out.read_text(encoding="utf-8")
    outside = re.search(r"https?://|\b(src|href)\s*=|@import|url\(", page)
    assert outside is None, "the page must not reference anything outside it"
    data = page_data(page)
    assert [p["label"] for p in data["problems"]] == ["iter_000/cd_small", "iter_001/cd_small", "iter_001/other"]
    nodes = data["problems"][2]["nodes"]
    assert data["problems"][2]["strategy"] == "tot" and len(nodes) == len(small_tree())
    schema_node = small_tree().to_json()["nodes"][2]
    del schema_node["logprobs"]
    assert {k: v for k, v in nodes[2].items() if k != "logprob"} == schema_node
    assert nodes[2]["reward"] == 1.0 and nodes[2]["answer"] == "22" and nodes[1]["logprob"] == pytest.approx(-0.4)


def test_step_text_cannot_break_out_of_the_data_element() -> None:
    page = render_html([("cd_small", small_tree())])
    assert page.count("</script>") == 2  # the template's own data and code elements only
    nodes = page_data(page)["problems"][0]["nodes"]
    assert nodes[7]["text"] == INJECTION
    assert nodes[7]["value"] is None  # NaN becomes null: JSON.parse rejects NaN


def test_a_large_tree_is_embedded_without_per_token_logprobs(tmp_path: Path) -> None:
    tree = big_tree()
    assert len(tree) == 10201
    data = page_data(render_html([("big", tree)]))
    assert len(data["problems"][0]["nodes"]) == 10201
    assert "logprobs" not in data["problems"][0]["nodes"][5]


@pytest.mark.parametrize(("content", "reason"), [
    ("{not json", "not JSON (line 1"),
    ('{"schema": 2, "problem_id": "x", "prompt": "", "nodes": []}', "schema 2 is not 1"),
    ('{"schema": 1, "problem_id": "x", "prompt": "", "nodes": [{"id": 0}, {"id": 1, "parent": 5}]}',
     "node 1 has invalid parent 5"),
    ("[1, 2]", "tree.json: "),
])
def test_a_malformed_tree_file_is_one_error_naming_the_file(tmp_path: Path, content: str, reason: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "trees" / "iter_000" / "tree.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    (tmp_path / "trees" / "iter_000" / "good.json").write_text(small_tree().dumps())
    with pytest.raises(TreeFileError, match=re.escape(str(bad))) as err:
        load_trees(tmp_path)
    assert reason in str(err.value)
    assert main([str(tmp_path)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and stderr.startswith(f"error: {bad}")


def test_a_folder_without_trees_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TreeFileError, match="no tree files"):
        load_trees(tmp_path)
    with pytest.raises(TreeFileError, match="no such file"):
        load_trees(tmp_path / "missing")


def test_dot_export_writes_one_file_per_tree(run: Path) -> None:
    written = write_view(run, fmt="dot")
    assert written == [run / "trees_dot" / "iter_000" / "cd_small.dot", run / "trees_dot" / "iter_001" / "cd_small.dot",
                       run / "trees_dot" / "iter_001" / "other.dot"]
    assert written[2].read_text() == small_tree("other", "tot").to_dot()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed (apt-get install graphviz)")
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_graphviz_renders_svg_and_png(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "tree.json"
    source.write_text(small_tree().dumps())
    [out] = write_view(source, tmp_path / "picture.out", fmt)
    assert out == tmp_path / f"picture.{fmt}"
    body = out.read_bytes()
    assert b"<svg" in body if fmt == "svg" else body.startswith(b"\x89PNG\r\n\x1a\n")


def test_without_graphviz_svg_falls_back_to_dot_with_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "tree.json"
    source.write_text(small_tree().dumps())
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH on which no `dot` can be found
    assert main([str(source), "--format", "svg"]) == 0
    assert "Graphviz `dot` is not installed" in capsys.readouterr().err
    assert (tmp_path / "tree.dot").read_text() == SearchTree.loads(source.read_text()).to_dot()
    assert not (tmp_path / "tree.svg").exists()


def test_command_line_entry_point(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    done = subprocess.run([sys.executable, "-m", "search.view", str(run), "-o", str(out)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[1], check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and len(page_data(out.read_text())["problems"]) == 3
