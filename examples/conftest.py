"""Examples use the stand-in shop bot unless --llm-model names another model."""

import pytest


def pytest_collection_modifyitems(config, items):
    # Default every example to the stand-in bot; --llm-model on the command line wins.
    if config.getoption("llm_model") is None:
        for item in items:
            item.add_marker(pytest.mark.llm(model="py:shopbot:reply"), append=True)
