import os

import pytest
import torch

from r1kit.testing import save_tiny, tiny_model, tiny_tokenizer

# keep the suite inside its CPU budget and deterministic
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tok():
    return tiny_tokenizer()


@pytest.fixture
def model(tok):
    return tiny_model(tok, "llama", seed=0)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """An HF from_pretrained directory holding a tiny random Llama and its tokenizer."""
    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama")


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "qwen2", "qwen2")
