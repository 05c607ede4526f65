"""The Colab install cell of every chapter, executed here: a reader on Colab never meets a broken
install line.

The hidden bootstrap cell of each committed ``.ipynb`` (what Colab opens) runs ``pip install`` of
``reprodiff @ git+<repository>``. This test runs that same command, with the repository swapped for
this checkout (``file://`` URL of a copy of its package files, so that pip's in-tree build leaves
the working tree clean), in a fresh virtual environment, then executes every import statement of
every chapter there. The environment sees the test environment's packages through a path file, as
Colab's Python comes with torch and friends, so nothing large is downloaded; pip builds with that
setuptools (``--no-build-isolation``) so nothing is downloaded at all.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def _code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _install_command(cell: str) -> list[str]:
    """The argument list of the ``subprocess.run`` call in the bootstrap cell (``sys.executable`` kept
    as a marker)."""
    for node in ast.walk(ast.parse(cell)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "subprocess.run":
            args = node.args[0]
            assert isinstance(args, ast.List), "the install command is a literal list"
            return [("<python>" if ast.unparse(a) == "sys.executable" else ast.literal_eval(a)) for a in args.elts]
    raise AssertionError("the Colab cell runs no subprocess.run(...)")


def _imports(notebook: Path) -> list[str]:
    """Every import statement of the chapter's code cells, as source lines."""
    lines = []
    for cell in _code_cells(notebook):
        try:
            tree = ast.parse(cell)
        except SyntaxError:  # a cell with IPython magics
            continue
        lines += [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return lines


def test_the_colab_install_cell_installs_this_checkout_and_every_chapter_imports(tmp_path):
    commands, imports = set(), []
    for notebook in CHAPTERS:
        boot = [c for c in _code_cells(notebook) if "google.colab" in c]
        assert len(boot) == 1, f"{notebook.name}: one Colab bootstrap cell"
        commands.add(tuple(_install_command(boot[0])))
        imports += [ln for ln in _imports(notebook) if ln not in imports]
    assert len(commands) == 1, f"the chapters install differently: {commands}"
    command = list(commands.pop())
    remote = [i for i, a in enumerate(command) if "git+" in a]
    assert command[:4] == ["<python>", "-m", "pip", "install"] and len(remote) == 1, command

    checkout = tmp_path / "checkout"  # the package files of this working tree, built outside it
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "src", checkout / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    name = command[remote[0]].split("@", 1)[0].strip()
    command[remote[0]] = f"{name} @ {checkout.as_uri()}"

    env_dir = tmp_path / "colab"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the test environment's packages (pip, setuptools, torch, diffusers, ...), as Colab's preinstalled ones
    Path(site, "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    clean.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    install = [str(python), *command[1:4], "--no-build-isolation", *command[4:]]
    run = subprocess.run(install, cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{' '.join(install)} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"

    script = "\n".join([*imports, "import reprodiff", "print(reprodiff.__file__)"])
    run = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=clean, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"a chapter's imports fail after the Colab install:\n{run.stderr[-3000:]}"
    assert Path(run.stdout.strip().splitlines()[-1]).is_relative_to(env_dir), \
        f"reprodiff was not imported from the fresh environment: {run.stdout}"
