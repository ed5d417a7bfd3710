"""The seam between the core and the applications, checked on the source: the core imports no
application and names no domain, and no two modules of the package import each other in a cycle,
not even through an import inside a function (a lazy import hides a cycle; it does not remove it).

    .venv/bin/python -m pytest -q tests/test_architecture.py
"""

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mint"
# Words of the rare-disease domain that the core's code and rules must not use (docstrings and
# comments may name the application as an example).
DOMAIN = re.compile(r"disease|\bhpo|omim|phenopacket|photo|\bnote\b|(?<!hugging )\bface", re.I)


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Modules `path` imports anywhere (absolute names; `from mint.x import y` counts as mint.x and mint.x.y)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def import_edges(path: Path, modules: set[str]) -> set[str]:
    """Package modules `path` imports anywhere (top level, in a function, under `if`): `from pkg import sub`
    is an edge to pkg.sub only."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            found |= subs or {node.module}
    return found & modules


def code_without_docs(path: Path) -> str:
    """The module's code with docstrings, comments and string constants that are prose removed."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            body[0] = ast.Pass()
    return ast.unparse(tree)


CORE = sorted((PACKAGE / "core").rglob("*.py"))  # with its packages (mint/core/trainers/, ...)


def import_graph(package: Path) -> nx.DiGraph:
    """Module -> the package's modules it imports (anywhere in its code), for every module under `package`."""
    root = package.parent
    modules = {module_name(p, root): p for p in package.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for imported in import_edges(path, set(modules)) - {name}:
            graph.add_edge(name, imported)
    return graph


def test_the_core_is_there():
    assert {"app", "schemas", "preferences", "train", "predict", "evaluate", "report"} <= {p.stem for p in CORE}
    assert {"text", "vision", "load", "kind"} <= {p.stem for p in CORE if p.parent.name == "students"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE / "core")))
def test_core_imports_no_application(path):
    bad = sorted(m for m in imports(path) if m.startswith("mint.apps") or m.startswith("mint") and
                 not m.startswith("mint.core"))
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(PACKAGE / "core")))
def test_core_code_names_no_domain(path):
    code = code_without_docs(path)
    allowed = {'"rare_disease"', "'rare_disease'", "mint.apps.rare_disease"}  # the registry's builtin names
    for word in allowed:
        code = code.replace(word, "")
    assert DOMAIN.findall(code) == [], f"{path.name}: domain words in code"


def test_core_rules_name_no_domain():
    for smk in [REPO / "rules" / "common.smk", *sorted((REPO / "rules" / "core").glob("*.smk"))]:
        code = "\n".join(line.split("#", 1)[0] for line in smk.read_text().splitlines())
        assert DOMAIN.findall(code) == [], smk.name


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE)
    assert "mint.core.students.text" in graph and "mint.apps.rare_disease.student" in graph
    assert list(nx.simple_cycles(graph)) == []


def test_the_cycle_check_sees_a_lazy_import(tmp_path):
    """A cycle closed by an import inside a function is found (as `app` <-> `config` once was)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "config.py").write_text("from pkg.app import Application\n")
    (package / "app.py").write_text("class Application:\n    def threads(self):\n"
                                    "        from pkg.config import load_yaml\n")
    assert list(nx.simple_cycles(import_graph(package))) in (
        [["pkg.app", "pkg.config"]], [["pkg.config", "pkg.app"]])


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The import check reads function-level imports too (where a lazy import would hide)."""
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from mint.apps.rare_disease import teacher\n")
    assert "mint.apps.rare_disease" in imports(bad)


def test_only_the_trainers_import_trl():
    """TRL moves trainers and renames internals between releases: one package meets it, mint/core/trainers/
    (its surface.py lists every TRL name it relies on), so an upgrade touches that package only."""
    trainers = PACKAGE / "core" / "trainers"
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "workflow_scripts").rglob("*.py"), *(REPO / "bench").rglob("*.py")]
    bad = sorted(str(p.relative_to(REPO)) for p in sources
                 if trainers not in p.parents and any(m == "trl" or m.startswith("trl.") for m in imports(p)))
    assert bad == [], f"only mint/core/trainers/ may import trl; also: {bad}"
    assert any(m.startswith("trl") for m in imports(trainers / "registry.py"))
