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
