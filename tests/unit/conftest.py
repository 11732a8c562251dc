import os

import pytest

os.environ.setdefault("UNLEARNLIB_PROGRESS", "0")


@pytest.fixture(scope="session")
def mnist5k():
    from unlearnlib.data import load_dataset

    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def digits():
    from unlearnlib.data import load_dataset

    return load_dataset("digits")
