"""The Keras fixture files in tests/fixtures/keras: complete, and the unsupported ones still refused.

The generic fixture tests (test_keras_files, test_saving, test_plan, test_configs, ...) iterate over
``_helpers.INDEX``: every fixture except those in ``_helpers.NOT_YET_SUPPORTED``.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import FIXTURES, INDEX, INDEX_ALL, NOT_YET_SUPPORTED

from fastdense.models import load_model
from fastdense.saving.errors import KerasFileError


def model_files(name):
    exts = (".h5",) if INDEX_ALL[name].get("only") == "h5" else (".keras", ".h5")
    return [FIXTURES / f"{name}{ext}" for ext in exts]


@pytest.mark.parametrize("name", sorted(INDEX_ALL))
def test_every_indexed_fixture_is_in_the_repository(name):
    for path in model_files(name):
        assert path.is_file(), path
    data = np.load(FIXTURES / f"{name}.io.npz")
    inputs = INDEX_ALL[name]["inputs"]
    assert sorted(data.files) == sorted([f"x{i}" for i in range(inputs)] + ["y"])
    assert list(data["y"].shape) == INDEX_ALL[name]["out_shape"]


def test_every_file_in_the_folder_is_indexed():
    stems = {p.name.split(".")[0] for p in FIXTURES.iterdir() if p.suffix in (".keras", ".h5", ".npz")}
    assert stems == set(INDEX_ALL)


def test_not_yet_supported_names_real_fixtures():
    assert NOT_YET_SUPPORTED <= set(INDEX_ALL)
    assert not NOT_YET_SUPPORTED & set(INDEX)
    assert {"mlp_mixed", "mlp_exotic", "seq_dense", "functional_shared", "mlp_f64", "mlp_dropout",
            "tfkeras2_mlp"} <= set(INDEX)


@pytest.mark.parametrize("name", sorted(NOT_YET_SUPPORTED))
def test_not_yet_supported_fixture_is_refused_on_load(name):
    # This test failing means fastdense now loads this file: remove the name from
    # _helpers.NOT_YET_SUPPORTED, so that every generic fixture test (outputs against Keras,
    # config round trip, save and reload, the compiled plan) covers it from now on.
    for path in model_files(name):
        with pytest.raises(KerasFileError, match="not support|Unsupported"):  # UnsupportedLayerError too
            load_model(path)
