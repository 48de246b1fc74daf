"""Helpers shared by several test files (``from _helpers import ...``).

pytest puts this folder on ``sys.path`` (tests/ has no ``__init__.py``), so this works for
``pytest tests`` and for a single file alike. It imports nothing from fastdense: the tests
check whichever fastdense ``import fastdense`` finds.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Real Keras 3 files and reference outputs, kept in the repository (see fixtures/keras/README.md)
# so that a clone anywhere runs every test. The original lives in ../shared/fixtures/keras.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras"
# Every fixture: name -> inputs, output shape, group, ... (an entry with "only": "h5" exists as
# .h5 alone).
INDEX_ALL: dict[str, dict[str, Any]] = json.loads((FIXTURES / "index.json").read_text())

# The fixture models fastdense cannot load yet (index.json group "layers": the layer kinds of
# issues 13 and 14). The generic fixture tests skip them here, in this one place;
# test_fixtures.py checks that each one is still refused on load with a clear error. When you
# add support for one, that test fails: remove the name from this set, and every generic
# fixture test then covers it.
NOT_YET_SUPPORTED: frozenset[str] = frozenset()

# The supported fixtures (what the generic tests iterate over), and the names that also exist
# as .keras files.
INDEX = {name: info for name, info in INDEX_ALL.items() if name not in NOT_YET_SUPPORTED}
KERAS3 = sorted(name for name, info in INDEX.items() if info.get("only") != "h5")
FIXTURE_FILES = [f"{n}.keras" for n in KERAS3] + [f"{n}.h5" for n in sorted(INDEX)]  # every model file


def run_in_threads(work: Callable[..., Any], args: Iterable[Any]) -> None:
    """``work(a)`` for each ``a`` of ``args``, each on its own thread, all started before any is
    joined (the concurrency tests: ``work`` records its own failures for the test to assert)."""
    threads = [threading.Thread(target=work, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def softmax64(z: Any) -> Any:
    """Row-wise softmax over the last axis, the float64 reference formula."""
    import numpy as np

    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def as_json(value: Any) -> Any:
    """``value`` after a trip through JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


def fixture_configs(**wanted: Any) -> list[dict]:
    """Every dict inside the fixtures' ``*.keras`` ``config.json`` whose items include ``wanted``.

    Depth first, supported fixtures only (``KERAS3``), in name order.
    ``fixture_configs(module="keras.constraints")`` gives every constraint config Keras wrote.
    """
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if all(node.get(key) == value for key, value in wanted.items()):
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for name in KERAS3:
        with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
            walk(json.loads(archive.read("config.json")))
    return found
