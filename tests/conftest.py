"""Shared fixtures."""
import pytest
import torch

from tests.tiny import byte_tokenizer


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core box spinning threads cost 10x."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok():
    """A byte-level tokenizer for tiny random models."""
    return byte_tokenizer()
