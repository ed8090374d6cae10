import pytest

from tests.conftest import randomise_zero_init


@pytest.fixture
def randomize_zero_parameters():
    """Fill the zero-initialised gates and output layers with noise, so outputs depend on every layer."""
    return lambda model, std=0.02: randomise_zero_init(model, std=std)
