"""Look at search trees offline: one self-contained HTML page, or Graphviz DOT/SVG/PNG.

    python -m search.view runs/2026-11-25/12-00-00            # every trees/**/*.json of a run
    python -m search.view trees/iter_001/p17.json -o p17.html
    python -m search.view trees/iter_001/p17.json --format svg  # needs Graphviz `dot`

The page carries its data and its script inline and asks for nothing over the network, so
it opens from a laptop, a cluster login node or an e-mail attachment alike. It renders
lazily (rows are built only when their parent is opened, children in pages of 200), so a
10 000-node tree stays usable.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from search.run_folder import write_atomic
from search.tree import SearchTree

TEMPLATE = Path(__file__).with_name("viewer_template.html")
FORMATS = ("html", "dot", "svg", "png")
LARGE_FOR_DOT = 2000  # Graphviz layout gets slow (minutes) beyond this many nodes


class TreeFileError(ValueError):
    """A tree file that cannot be read as a `SearchTree`; the message names the file."""


def load_tree(path: Path) -> SearchTree:
    try:
        return SearchTree.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TreeFileError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise TreeFileError(f"{path}: not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (ValueError, AttributeError, TypeError) as e:
        raise TreeFileError(f"{path}: {e}") from None


RUN_FOLDER_MARKS = ("metrics.jsonl", "metrics.json", "checkpoints", "traces", ".hydra")


def trees_root(source: Path) -> Path:
    """Where the trees behind the folder `source` live: a run folder's `trees/` (never the
    rest of it: checkpoints hold `config.json` files), or a folder that holds trees itself."""
    if (source / "trees").is_dir() or any((source / mark).exists() for mark in RUN_FOLDER_MARKS):
        return source / "trees"
    return source


def tree_files(source: Path) -> list[Path]:
    """The tree files behind `source`: the file itself, or every `trees/**/*.json` of a run
    folder (or `**/*.json` of a folder holding trees directly), in path order."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise TreeFileError(f"{source}: no such file or folder")
    root = trees_root(source)
    files = sorted(p for p in root.rglob("*.json") if p.is_file()) if root.is_dir() else []
    if not files:
        raise TreeFileError(f"{source}: no tree files (looked for {root}/**/*.json)")
    return files


def load_trees(source: Path) -> list[tuple[str, SearchTree]]:
    """(label, tree) for every tree behind `source`; the label is the file's path below
    the trees folder without `.json`, e.g. `iter_001/p17`, so iterations stay apart."""
    files = tree_files(source)
    base = files[0].parent if source.is_file() else trees_root(source)
    return [(str(f.relative_to(base).with_suffix("").as_posix()), load_tree(f)) for f in files]


def _rounded(x: Any) -> Any:
    """Floats to 4 decimals; NaN and infinities (which JSON.parse rejects) to null."""
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    return x


def _page_problem(label: str, tree: SearchTree) -> dict[str, Any]:
    """The page's form of a tree: the schema's fields, with per-token log-probs summed
    (they are most of a tree file's size and the page shows only their total)."""
    nodes = []
    for node in tree.to_json()["nodes"]:
        logprobs = node.pop("logprobs")
        node = {k: _rounded(v) for k, v in node.items()}
        node["logprob"] = _rounded(float(sum(logprobs))) if logprobs else None
        nodes.append(node)
    return {"label": label, "problem_id": tree.problem_id, "prompt": tree.prompt,
            "strategy": tree.graph.graph["strategy"], "nodes": nodes}


def render_html(trees: list[tuple[str, SearchTree]], title: str = "plateau search trees") -> str:
    """One self-contained HTML page showing `trees`, switchable from a side list."""
    data = json.dumps({"problems": [_page_problem(label, t) for label, t in trees]}, ensure_ascii=False)
    # Inside <script> only "<" can end the element early; \u003c is the same string to JSON.parse.
    data = data.replace("<", "\\u003c")
    page = TEMPLATE.read_text(encoding="utf-8")
    return page.replace("__TITLE__", html.escape(title)).replace("__DATA__", data)


def render_graphviz(tree: SearchTree, fmt: str) -> bytes:
    """SVG or PNG bytes from Graphviz's `dot`; RuntimeError when `dot` is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("Graphviz `dot` is not installed (apt-get install graphviz)")
    done = subprocess.run([dot, f"-T{fmt}"], input=tree.to_dot().encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def default_output(source: Path, fmt: str) -> Path:
    """`x.json` → `x.<fmt>` beside it; a folder → `<folder>/tree_viewer.html` for HTML or
    `<folder>/trees_<fmt>/` (one file per tree) otherwise."""
    if source.is_file():
        return source.with_suffix(f".{fmt}")
    return source / ("tree_viewer.html" if fmt == "html" else f"trees_{fmt}")


def write_view(source: Path, out: Path | None = None, fmt: str = "html") -> list[Path]:
    """Write the view of `source` (a tree file or a run folder) and return the files written.
    HTML is one page for all trees; DOT/SVG/PNG are one file per tree (into the folder `out`
    when `source` holds several). Without Graphviz, SVG/PNG fall back to DOT with a message."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    trees = load_trees(source)
    out = out or default_output(source, fmt)
    if fmt == "html":
        write_atomic(out, render_html(trees, title=f"plateau · {source.name}"))
        return [out]
    if fmt != "dot" and shutil.which("dot") is None:
        print(f"Graphviz `dot` is not installed: writing DOT instead of {fmt.upper()} "
              "(apt-get install graphviz to render it)", file=sys.stderr)
        fmt = "dot"
    targets = ([out.with_suffix(f".{fmt}")] if len(trees) == 1 and source.is_file()
               else [out / f"{label}.{fmt}" for label, _ in trees])
    for (_, tree), target in zip(trees, targets, strict=True):
        if fmt == "dot":
            write_atomic(target, tree.to_dot())
            continue
        if len(tree) > LARGE_FOR_DOT:
            print(f"{target.name}: {len(tree)} nodes, Graphviz layout may take minutes", file=sys.stderr)
        write_atomic(target, render_graphviz(tree, fmt))
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.view", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a tree JSON file or a run folder (reads trees/**/*.json)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="output file (HTML, or DOT/SVG/PNG of one tree) or folder (one file per tree)")
    parser.add_argument("--format", choices=FORMATS, default="html")
    args = parser.parse_args(argv)
    try:
        written = write_view(args.source, args.output, args.format)
    except (TreeFileError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
