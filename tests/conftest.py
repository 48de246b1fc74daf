"""Fixtures shared by several test files."""

import pytest


@pytest.fixture
def fresh_names():
    """Automatic layer names start afresh (``dense``, ``dense_1``, ...) and are reset afterwards.

    A test file opts in for all its tests with ``pytestmark = pytest.mark.usefixtures("fresh_names")``.
    """
    from fastdense.layers import clear_session  # imported here: loading conftest imports no fastdense

    clear_session()
    yield
    clear_session()


@pytest.fixture(autouse=True, scope="session")
def _run_outside_the_source_tree(tmp_path_factory):
    """Tests run from an empty directory: a child ``python -c ...`` puts its working directory
    first on sys.path, and from the repository root it would import the source tree's
    ``fastdense`` (no compiled extension) instead of the installed package under test."""
    import os

    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(here)
