"""Small helpers for the chapters: showing package source and reporting the runtime."""

from __future__ import annotations

import inspect
import platform

__all__ = ["show_source", "runtime_report"]


def show_source(obj) -> "object":
    """Display the source of a package function or class, highlighted (the chapter shows, never copies)."""
    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")


def runtime_report() -> str:
    """One line naming the hardware a chapter ran on: CPU threads or the GPU, and torch's version."""
    import torch

    if torch.cuda.is_available():
        where = f"GPU: {torch.cuda.get_device_name(0)}"
    else:
        where = (f"CPU only ({torch.get_num_threads()} threads). On Colab: Runtime > Change runtime type > "
                 "GPU, then run the 'gpu' profile")
    return f"torch {torch.__version__}, Python {platform.python_version()}; {where}"
