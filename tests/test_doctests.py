"""Every docstring example of the installed fastdense, and the ``>>>`` examples in README.md and
docs/*.md, run as doctests, so the documentation stays true.

The modules are those of the fastdense that ``import fastdense`` finds (the installed package
under .ci/run), not ./fastdense. The Markdown files are this checkout's. A Markdown file's
``>>>`` blocks (in ```python or ```pycon fences) run in order in one namespace, in a temporary
working directory, so an example may build on an earlier one and write files.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import fastdense

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
MODULES = sorted({"fastdense", *(m.name for m in pkgutil.walk_packages(fastdense.__path__, "fastdense."))})
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[ \t]*(?:python|pycon|py)[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def run(test: doctest.DocTest) -> tuple[int, str]:
    """Run one doctest; return the number of examples and the failure report ("" if none)."""
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append, clear_globs=True)
    return result.attempted, "".join(report)


def import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional peer (e.g. dask) missing, not a fastdense bug
        if exc.name and not exc.name.startswith("fastdense"):
            pytest.skip(f"{name} needs {exc.name}")
        raise


@pytest.mark.usefixtures("fresh_names")
@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = import_module(name)
    failures = []
    for test in doctest.DocTestFinder().find(module, name):
        if test.examples:
            failures.append(run(test)[1])
    assert not "".join(failures), "".join(failures)


def markdown_doctest(path: Path) -> doctest.DocTest:
    text = path.read_text(encoding="utf-8")
    blocks = [block for block in FENCE.findall(text) if block.lstrip().startswith(">>>")]
    source = "\n".join(blocks)
    return doctest.DocTestParser().get_doctest(source, {}, path.name, str(path), 0)


@pytest.mark.usefixtures("fresh_names")
@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_markdown_examples(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attempted, failures = run(markdown_doctest(path))
    assert not failures, failures
    if path.name == "README.md":
        assert attempted >= 5  # the quick start is there and was found


def test_doctests_are_found():
    """The collection itself works: the package's docstrings hold many examples."""
    count = 0
    for name in ("fastdense", "fastdense.ops", "fastdense.activations", "fastdense.saving.api"):
        count += sum(len(t.examples) for t in doctest.DocTestFinder().find(importlib.import_module(name)))
    assert count >= 20
