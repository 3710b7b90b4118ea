"""What the compile tests share: a counting backend and empty compile caches per test."""

from __future__ import annotations

import pytest
import torch

from srt.engine.compiled import reset as reset_compiled


@pytest.fixture
def fresh_dynamo():
    """Empty compile caches (dynamo's and the engine's, both per process) before and after a test."""
    torch._dynamo.reset()
    reset_compiled()
    yield
    torch._dynamo.reset()
    reset_compiled()


class CountingBackend:
    """A ``torch.compile`` backend that counts the graphs it is given and runs them as traced."""

    def __init__(self, on_compile=None) -> None:
        self.graphs = 0
        self.on_compile = on_compile

    def __call__(self, graph, example_inputs):
        self.graphs += 1
        if self.on_compile is not None:
            self.on_compile()
        return graph.forward
