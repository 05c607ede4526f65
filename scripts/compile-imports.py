"""Byte-compile the modules that the book's processes import, once, at setup.

This machine sets PYTHONDONTWRITEBYTECODE, so a module without a .pyc in the environment is compiled
again by every process that imports it (diffusers and torch: about 15 s per process). Compiling the
whole environment up front (compileall) took 64 s on two cores, for 18,000 files of which about 5,000
are ever imported. Instead, this script imports what the book, its tests and its build use, with
bytecode writing switched on for its own run only (``sys.dont_write_bytecode``), so exactly those
modules get their .pyc. A module it misses still works; it is only compiled on each import.

Run by ``make setup``; takes about 25 s.
"""

import importlib
import os
import sys
import warnings

sys.dont_write_bytecode = False
warnings.simplefilter("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its notes on optional backends are not ours
MODULES = [
    # models, training and sampling
    "torch", "diffusers", "diffusers.models.unets.unet_2d", "diffusers.models.attention",
    "diffusers.models.embeddings", "diffusers.schedulers", "transformers", "peft", "accelerate", "safetensors.torch",
    # analysis and figures
    "numpy", "scipy.stats", "sklearn.neural_network", "matplotlib.pyplot", "seaborn", "tqdm.auto", "ipywidgets",
    # executing, testing and building the book
    "papermill", "nbclient", "nbformat", "ipykernel.kernelapp", "jupytext", "pytest", "nbval.plugin", "xdist",
    "jupyter_book", "sphinx.application", "myst_nb", "sphinx_book_theme",
]
# names that the libraries load lazily on first access (the gpu profile's pipelines, which the smoke
# test runs at toy scale)
LAZY = {
    "diffusers": ["UNet2DModel", "UNet2DConditionModel", "AutoencoderKL", "DDIMScheduler", "DDPMScheduler",
                  "PNDMScheduler", "DDPMPipeline", "DiffusionPipeline", "StableDiffusionPipeline"],
    "transformers": ["CLIPTextModel", "CLIPTokenizer", "CLIPTextConfig"],
    "accelerate": ["Accelerator"],
}
for name in MODULES:
    importlib.import_module(name)
for module, names in LAZY.items():
    for name in names:
        getattr(importlib.import_module(module), name)
