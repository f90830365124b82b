"""CPU threads of torch for one stage: set on entry, restored on exit."""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (``None`` or ``0``: leave torch's choice)."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
