"""The agent runs on hosts with only the base install (httpx, PyYAML) and Python 3.9."""

from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "src" / "zfs_sync" / "agent"
# The agent's modules, plus the one module outside it that it imports.
SOURCES = sorted(AGENT.glob("*.py")) + [ROOT / "src" / "zfs_sync" / "domain" / "names.py"]
SERVER_PACKAGES = ("fastapi", "starlette", "sqlalchemy", "alembic", "pydantic", "uvicorn",
                   "psycopg", "click", "jinja2", "prometheus_client", "orjson")

IMPORT_ALL = textwrap.dedent("""
    import importlib, pkgutil, sys
    import zfs_sync.agent as agent
    for info in pkgutil.iter_modules(agent.__path__):
        if info.name != "__main__":
            importlib.import_module("zfs_sync.agent." + info.name)
    from zfs_sync.agent.main import main
    assert main(["config-check", "--reference"]) == 0
    loaded = sorted(m for m in sys.modules if m.startswith("zfs_sync."))
    outside = [m for m in loaded if not m.startswith("zfs_sync.agent")]
    assert outside == ["zfs_sync.domain", "zfs_sync.domain.names"], outside
""")

BLOCKER = textwrap.dedent(f"""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {SERVER_PACKAGES!r}:
                raise ImportError("server dependency imported by the agent: " + name)
    sys.meta_path.insert(0, Block())
""")


def test_agent_imports_without_server_dependencies() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKER + IMPORT_ALL],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


class _RuntimeSyntax(ast.NodeVisitor):
    """Finds what Python 3.9 cannot run outside annotations (which stay strings with
    ``from __future__ import annotations``)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def _skip_annotations(self, node: ast.AST) -> None:
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns"):
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    self.visit(child)

    visit_arg = visit_AnnAssign = visit_FunctionDef = visit_AsyncFunctionDef = _skip_annotations

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.BitOr) and any(
            isinstance(side, ast.Constant) and side.value is None
            or isinstance(side, ast.Name) and side.id in ("int", "str", "float", "bool", "bytes",
                                                          "list", "dict", "tuple", "type")
            for side in (node.left, node.right)
        ):
            self.problems.append(f"line {node.lineno}: X | Y type union at run time (3.10+)")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg in ("strict", "kw_only", "slots"):
                self.problems.append(f"line {node.lineno}: {keyword.arg}= (3.10+)")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        late = {"StrEnum", "TypeAlias", "ParamSpec", "Self", "Never", "TypeGuard", "UTC",
                "assert_never", "LiteralString", "Concatenate"}
        for alias in node.names:
            if alias.name in late:
                self.problems.append(f"line {node.lineno}: {alias.name} (3.10+)")
        if node.module in ("tomllib",):
            self.problems.append(f"line {node.lineno}: {node.module} (3.11+)")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_source_is_python_3_9(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source, feature_version=(3, 9))  # `match`, `except*` ... fail here
    assert "from __future__ import annotations" in source
    checker = _RuntimeSyntax()
    checker.visit(tree)
    assert checker.problems == []


def _python39() -> str | None:
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    candidates += ["/usr/bin/python3.9", shutil.which("python3.9") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                   capture_output=True, text=True, check=False)
            if probe.stdout.strip() == "(3, 9)":  # a pyenv shim may exist but not run
                return candidate
    return None


def test_agent_runs_on_a_real_python_3_9(tmp_path: Path) -> None:
    """Where a Python 3.9 exists (the project's machines have one under pyenv), import every
    agent module there, with only the base dependencies on the path, and run some code.
    Without one, the AST checks above are what guards 3.9."""
    python = _python39()
    if python is None:
        return
    site = Path(sysconfig.get_paths()["purelib"])
    # Only the base install's pure-Python packages: the agent must need nothing else.
    deps = tmp_path / "deps"
    deps.mkdir()
    for name in ("httpx", "httpcore", "h11", "anyio", "sniffio", "idna", "certifi", "yaml",
                 "typing_extensions.py", "exceptiongroup"):
        if (site / name).exists():
            (deps / name).symlink_to(site / name)
    exercise = IMPORT_ALL + textwrap.dedent("""
        from zfs_sync.agent import pipeline, config
        result = pipeline.run_pipeline(["printf", "abc"], ["cat"], pipeline.Options())
        assert result.ok and result.bytes == 3, result
        parsed = config.parse_config({"server_url": "http://w:8000", "system_id": "s1",
                                      "api_key": "k", "datasets": {"include": ["tank"]}})
        assert parsed.datasets.matches("tank/a") and not parsed.datasets.matches("pool")
    """)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{deps}",
           "PYTHONNOUSERSITE": "1"}
    result = subprocess.run([python, "-c", exercise], capture_output=True, text=True, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
