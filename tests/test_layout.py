"""The package's layout rules: no import cycles, modules under 400 lines, paths spelled in one
place, one stage module per subcommand, and parse-time imports that stay light."""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lmcpipe import cli

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "lmcpipe"
MAX_LINES = 400


def _cycles_script():
    spec = importlib.util.spec_from_file_location("import_cycles",
                                                  REPO / "scripts" / "import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    """The checker itself can fail: two modules importing each other, one of them lazily."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import x\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    script = _cycles_script()
    assert script.cycles(script.graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_no_import_cycles_among_lmcpipe_modules():
    script = _cycles_script()
    assert script.cycles(script.graph(PACKAGE)) == []


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# A file name of an artifact, or a path under results/ or logs/, written as a string literal.
ARTIFACT = re.compile(r"(^|/)(results|logs)/|(^|/)(model|start|mask|k\d+)\.pt$|"
                      r"(^|/)(metrics|path)\.csv$|\.(resume|partial)$")


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body and isinstance(node.body[0], ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docs]


def test_paths_is_the_only_module_that_spells_an_artifact_path():
    leaks = [f"{p.relative_to(REPO)}:{line}: {text!r}"
             for p in sorted(PACKAGE.rglob("*.py")) if p.name != "paths.py"
             for line, text in _literals(p) if ARTIFACT.search(text)]
    smk = re.compile(r"[\"'](results|logs)/|\.(pt|csv|log)[\"']")
    for rules in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for i, line in enumerate(rules.read_text().splitlines(), 1):
            if smk.search(line.split("#")[0]):
                leaks.append(f"{rules.relative_to(REPO)}:{i}: {line.strip()}")
    assert leaks == []


def test_the_artifact_pattern_catches_a_typed_path():
    assert all(ARTIFACT.search(s) for s in ("results/x/s0/dense", "logs/x/a.log", "model.pt",
                                            "/mask.pt", "path.csv", "x/model.pt.resume"))
    assert not any(ARTIFACT.search(s) for s in ("runs", "mask", "path", "--model-out"))


def test_every_subcommand_is_the_stage_module_of_its_name():
    for name in cli.STAGES:
        module = PACKAGE / "stages" / f"{name.replace('-', '_')}.py"
        assert module.is_file(), name
        functions = {n.name for n in ast.parse(module.read_text()).body
                     if isinstance(n, ast.FunctionDef)}
        assert {"add_arguments", "main"} <= functions, name
    stage_files = {p.stem for p in (PACKAGE / "stages").glob("*.py")} - {"__init__"}
    assert stage_files == {name.replace("-", "_") for name in cli.STAGES}


@pytest.mark.parametrize("module", ["lmcpipe.paths", "lmcpipe.plan", "lmcpipe.config",
                                    "lmcpipe.codever", "lmcpipe.data", "lmcpipe.models",
                                    "lmcpipe.figures.registry", "lmcpipe.cli"])
def test_what_the_rules_and_the_cli_import_at_parse_time_is_light(module):
    """Snakemake imports these at every start (and the CLI before every stage): no torch,
    numpy, pandas or matplotlib, which cost seconds per start."""
    heavy = ("torch", "numpy", "pandas", "matplotlib")
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "[]", f"{module} imports {out}"


def test_the_config_schema_ships_inside_the_package():
    """An installed lmcpipe validates configs too: the schema is package data that
    pyproject's glob matches, and workflow/schemas/ (the Snakemake convention) links to it."""
    from lmcpipe import config

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    assert config.SCHEMA.is_file() and config.SCHEMA.parent == PACKAGE
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["lmcpipe"]
    assert any(config.SCHEMA.match(g) for g in globs)
    assert (REPO / "workflow" / "schemas" / "config.schema.yaml").resolve() == config.SCHEMA
