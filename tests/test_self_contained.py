"""The suite runs on a fresh clone with nothing beside it: no test names the sample-data folder
some machines keep next to the repository (../shared), and every media file the tests read is in
tests/media, small, with its source and licence in tests/media/README.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import MEDIA_DIR, REPO

OUTSIDE = re.compile(r"(^|[/\\])shared($|[/\\])")  # a path through a folder named `shared`
MEDIA_BUDGET = 3 * 2**20  # bytes: the repository carries these in every clone


def path_literals(source: str) -> list[str]:
    """The string constants of a Python file that name a `shared` folder."""
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if OUTSIDE.search(node.value)
    ]


def test_no_test_or_notebook_names_a_folder_outside_the_repository():
    assert path_literals('data = Path("..") / "shared" / "data"') == ["shared"]  # it can fail
    assert path_literals('f"{root}/../shared/data/x.mp4"') == ["/../shared/data/x.mp4"]
    found = {
        str(path.relative_to(REPO)): literals
        for path in sorted((REPO / "tests").rglob("*.py"))
        if path != Path(__file__) and (literals := path_literals(path.read_text()))
    }
    found |= {
        str(path.relative_to(REPO)): ["shared/"]
        for path in sorted((REPO / "notebooks").glob("*.ipynb"))
        if re.search(r"\bshared/", path.read_text())
    }
    assert found == {}


def test_every_media_file_is_small_and_attributed():
    readme = (MEDIA_DIR / "README.md").read_text()
    media = [p for p in MEDIA_DIR.iterdir() if p.is_file()]
    media = [p for p in media if p.name not in ("README.md", "make_media.py")]
    assert len(media) >= 5
    unattributed = [p.name for p in media if f"`{p.name}`" not in readme]
    assert unattributed == [], "add each file's source and licence to tests/media/README.md"
    assert sum(p.stat().st_size for p in media) < MEDIA_BUDGET
