"""The layout rules of docs/architecture.md that import-linter does not check.

- no module of ``src/longtail`` over 600 lines;
- an import inside a function only for an optional dependency (or, in the command line, to keep
  ``longtail --help`` fast), with a comment on its line or the line above saying why;
- the task kinds are named once: the core (``longtail.engine``) holds no branch on a task name.

The import direction (library < engine core < tracks < command line, tracks independent, no cycles)
is import-linter's: ``lint-imports`` in CI, and :func:`test_import_contracts` here.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "longtail"
MAX_LINES = 600
#: Optional dependencies (the ``cli`` extra, tensorboard) a function may import when it needs them.
OPTIONAL = {
    "matplotlib",
    "scipy",
    "sklearn",
    "imblearn",
    "yaml",
    "tqdm",
    "PIL",
    "pyarrow",
    "safetensors",
    "onnxruntime",
    "filelock",
    "optuna",
    "torch.utils.tensorboard",
}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_size(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"


def _function_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
                    out.append((sub.lineno, sub.module))
                elif isinstance(sub, ast.Import):
                    out.extend((sub.lineno, alias.name) for alias in sub.names)
    return sorted(set(out))


def _allowed(path: Path, module: str) -> bool:
    if any(module == dep or module.startswith(dep + ".") for dep in OPTIONAL):
        return True
    # the command line imports the engine when a command runs, so `longtail --help` stays fast
    if path in (SRC / "cli.py", SRC / "cli_bundle.py", SRC / "cli_tune.py"):
        return True
    # `longtail.load`: the package root reaches the engine only when called, so that importing
    # the library (`longtail.losses`) does not import the engine
    return path == SRC / "__init__.py" and module == "longtail.engine.bundle"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_inside_functions_are_optional_and_commented(path: Path) -> None:
    lines = path.read_text().splitlines()
    problems = []
    for lineno, module in _function_imports(path):
        if not _allowed(path, module):
            problems.append(
                f"line {lineno}: {module} (not an optional dependency: import it at the top)"
            )
            continue
        here, above = lines[lineno - 1], lines[lineno - 2] if lineno > 1 else ""
        if "#" not in here and not above.strip().startswith("#"):
            problems.append(f"line {lineno}: {module} (say why in a comment)")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


TASK_NAMES = ("single-label", "multi-label", "open-set", "distillation", "metric-learning")


def _compares_to_task_name(node: ast.AST) -> bool:
    """``x == "open-set"``, ``task in ("open-set", ...)``: a branch on a task kind's name."""
    if not isinstance(node, ast.Compare):
        return False
    consts = [
        c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)
    ]
    return any(v in TASK_NAMES for v in consts)


@pytest.mark.parametrize(
    "path", sorted((SRC / "engine").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC))
)
def test_core_has_no_branch_on_a_task_name(path: Path) -> None:
    tree = ast.parse(path.read_text())
    found = [n.lineno for n in ast.walk(tree) if _compares_to_task_name(n)]
    assert not found, f"{path.relative_to(ROOT)} branches on a task name at lines {found}"


def test_import_contracts() -> None:
    exe = shutil.which("lint-imports")
    if exe is None:  # pragma: no cover - the dev extra installs it
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
