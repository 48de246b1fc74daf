"""Helpers shared by several test files (``from _helpers import ...``).

pytest puts this folder on ``sys.path`` (tests/ has no ``__init__.py``), so this works for
``pytest tests`` and for a single file alike. It imports nothing from fastdense: the tests
check whichever fastdense ``import fastdense`` finds.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

# Real Keras 3 files and reference outputs (see ../shared/fixtures/keras/README.md).
FIXTURES = Path(os.environ.get("FASTDENSE_KERAS_FIXTURES", Path(__file__).resolve().parents[2] / "shared/fixtures/keras"))
# index.json (name -> inputs, output shape, ...; {} without fixtures), and the names that also exist
# as .keras files (an entry with "only": "h5" exists as .h5 alone).
INDEX = json.loads((FIXTURES / "index.json").read_text()) if (FIXTURES / "index.json").exists() else {}
KERAS3 = sorted(name for name, info in INDEX.items() if info.get("only") != "h5")
FIXTURE_FILES = [f"{n}.keras" for n in KERAS3] + [f"{n}.h5" for n in sorted(INDEX)]  # every model file


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

    Depth first, files in name order; empty when the fixtures are missing.
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

    for path in sorted(FIXTURES.glob("*.keras")):
        with zipfile.ZipFile(path) as archive:
            walk(json.loads(archive.read("config.json")))
    return found
