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

from mint.core.app import BUILTIN, load_application

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


# Every Snakefile, rules file and example rules file: Snakemake includes them into one namespace.
SMK_FILES = [REPO / "Snakefile", *sorted((REPO / "rules").rglob("*.smk")), *sorted((REPO / "examples").rglob("*.smk"))]


def defined_twice(paths: list[Path]) -> dict[str, list[str]]:
    """Function name -> the files that define it, for each name defined more than once (in one file or several).
    Snakemake files are not Python: a `def name(` at the start of a line is a definition."""
    owners: dict[str, list[str]] = {}
    for path in paths:
        for name in re.findall(r"^def (\w+)\(", path.read_text(), flags=re.M):
            owners.setdefault(name, []).append(path.relative_to(REPO).as_posix() if path.is_relative_to(REPO)
                                               else path.name)
    return {name: files for name, files in owners.items() if len(files) > 1}


def test_no_function_is_defined_in_two_rules_files():
    """An application's rules file that defined a function of rules/common.smk would replace it silently (one
    namespace; the last include wins): what an application adds to the core's rules is a field of `Application`."""
    assert {"common.smk", "rare_disease_common.smk", "tissue_common.smk"} <= {p.name for p in SMK_FILES}
    assert defined_twice(SMK_FILES) == {}


def test_no_application_rules_file_assigns_a_name_of_the_core():
    """Nor a module-level name (`CASES = ...`) of the Snakefile or the core's rules: two applications' files may
    share one (each runs alone), an application's and the core's may not."""
    def assigned(path: Path) -> set[str]:
        return set(re.findall(r"^(\w+) = ", path.read_text(), flags=re.M))

    core = [REPO / "Snakefile", REPO / "rules" / "common.smk", *sorted((REPO / "rules" / "core").glob("*.smk"))]
    core_names = set().union(*map(assigned, core))
    assert {"CASES", "STEP", "APP"} <= core_names
    clashes = {p.relative_to(REPO).as_posix(): sorted(assigned(p) & core_names) for p in SMK_FILES if p not in core}
    assert {path: names for path, names in clashes.items() if names} == {}


def test_the_redefinition_check_sees_one(tmp_path):
    """A rules file that redefines the core's function, as rules/apps/rare_disease_common.smk once redefined
    application_scores(), is found."""
    (tmp_path / "common.smk").write_text("def application_scores():\n    return []\n\n\nrule a:\n    input: 'x'\n")
    (tmp_path / "app.smk").write_text("# its baselines\ndef application_scores():\n    return ['y']\n")
    assert defined_twice([tmp_path / "common.smk", tmp_path / "app.smk"]) == {
        "application_scores": ["common.smk", "app.smk"]}


# The fields of `Application` that are functions of the config or of the report's context: an application's hooks.
HOOKS = ("check_config", "check_inputs", "input_files", "teacher", "score_files", "summary_sections")


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_an_applications_hooks_live_in_its_hooks_module(name):
    app = load_application(name)
    where = {field: getattr(app, field).__module__ for field in HOOKS if callable(getattr(app, field))}
    assert "teacher" in where and set(where.values()) == {f"{BUILTIN[name]}.hooks"}, where


def test_every_application_field_is_documented():
    """docs/architecture.md, Writing an application, gives each field of `Application` a line."""
    from dataclasses import fields

    from mint.core.app import Application

    text = (REPO / "docs" / "architecture.md").read_text()
    assert "\n## Writing an application\n" in text
    section = text.split("\n## Writing an application\n", 1)[1].split("\n## ", 1)[0]
    assert [f.name for f in fields(Application) if f"`{f.name}`" not in section] == []
