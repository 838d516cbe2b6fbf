"""House rules checked in CI: core/ never imports a UI library; safe loading everywhere."""
from __future__ import annotations

import ast

from conftest import REPO

UI_LIBS = {"textual", "typer", "rich", "textual_plotext", "plotext"}


def python_files(folder):
    return sorted((REPO / folder).rglob("*.py"))


def imported_roots(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node.lineno


def test_core_never_imports_a_ui_library():
    offenders = [f"{p.relative_to(REPO)}:{line} imports {mod}"
                 for p in python_files("core") for mod, line in imported_roots(p) if mod in UI_LIBS]
    assert not offenders, offenders


def test_no_unsafe_yaml_or_torch_load():
    offenders = []
    for folder in ("core", "medcls_tui", "bench"):
        for p in python_files(folder):
            text = p.read_text(encoding="utf-8")
            tree = ast.parse(text)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = ast.unparse(node.func)
                if name in ("yaml.load", "yaml.unsafe_load"):
                    offenders.append(f"{p}:{node.lineno} {name}")
                if name == "torch.load":
                    kw = {k.arg: k.value for k in node.keywords}
                    if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                        offenders.append(f"{p}:{node.lineno} torch.load without weights_only=True")
                if name in ("os.system", "subprocess.call", "subprocess.Popen", "subprocess.run") and any(
                        k.arg == "shell" for k in node.keywords):
                    offenders.append(f"{p}:{node.lineno} shell=True")
    assert not offenders, offenders


# ---------------------------------------------------------------- the house plan (docs/ARCHITECTURE.md)

PROJECT = ("core", "medcls_tui")
FACES = {"cli": ("medcls_tui.cli", "medcls_tui.cli_"), "app": ("medcls_tui.app", "medcls_tui.screens",
                                                              "medcls_tui.widgets")}
"""The two faces: the command line (cli*.py modules) and the Textual app (app.py, screens/, widgets/)."""


def module_name(path, root=REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root=REPO) -> dict:
    return {module_name(p, root): p for folder in PROJECT for p in sorted((root / folder).rglob("*.py"))}


def import_edges(modules: dict) -> dict:
    """module -> the project modules it imports anywhere in the file (function-level imports too).
    `from pkg import name` counts as importing pkg.name when that is a module, else pkg itself."""
    edges = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def import_cycles(edges: dict) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def face_of(module: str):
    return next((face for face, prefixes in FACES.items() if module.startswith(prefixes)), None)


def face_crossings(edges: dict) -> list[str]:
    return [f"{a} ({face_of(a)}) imports {b} ({face_of(b)})" for a, targets in sorted(edges.items())
            for b in sorted(targets) if face_of(a) and face_of(b) and face_of(a) != face_of(b)]


def core_to_ui(edges: dict) -> list[str]:
    return [f"{a} imports {b}" for a, targets in sorted(edges.items()) for b in sorted(targets)
            if a.startswith("core") and b.startswith("medcls_tui")]


MAX_LINES = 500


def long_files(root=REPO) -> list[str]:
    return [f"{p.relative_to(root)}: {n} lines" for folder in ("core", "medcls_tui", "bench", "docs")
            for p in sorted((root / folder).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]


def test_no_import_cycles_among_project_modules():
    assert import_cycles(import_edges(project_modules())) == []


def test_core_never_imports_the_ui_package():
    assert core_to_ui(import_edges(project_modules())) == []


def test_the_cli_and_the_app_never_import_each_other():
    edges = import_edges(project_modules())
    assert {face_of(m) for m in edges} >= {"cli", "app"}  # both faces are seen, so the check is about something
    assert face_crossings(edges) == []


def test_no_file_over_500_lines_outside_tests():
    assert long_files() == []


def test_each_rule_fails_on_a_deliberate_violation(tmp_path):
    """The four checks above, each shown red once on a copy of the layout with one violation put in."""
    def write(rel, text):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    write("core/__init__.py", "")
    write("core/a.py", "def f():\n    from core import b  # hidden in a function\n")
    write("core/b.py", "from core.a import f\n")
    write("core/c.py", "import medcls_tui.app\n")
    write("medcls_tui/__init__.py", "")
    write("medcls_tui/app.py", "def resume():\n    from .cli import resolve_from_cli\n")
    write("medcls_tui/cli.py", "")
    write("bench/big.py", "x = 1\n" * (MAX_LINES + 1))
    edges = import_edges(project_modules(tmp_path))
    assert import_cycles(edges) == [["core.a", "core.b"]]
    assert core_to_ui(edges) == ["core.c imports medcls_tui.app"]
    assert face_crossings(edges) == ["medcls_tui.app (app) imports medcls_tui.cli (cli)"]
    assert long_files(tmp_path) == [f"bench/big.py: {MAX_LINES + 1} lines"]


def test_architecture_doc_names_packages_that_exist():
    """docs/ARCHITECTURE.md draws the packages and follows --lr through files: each must exist."""
    import re

    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    packages = set(re.findall(r"\b(core/[a-z_]+)/", doc)) | set(re.findall(r"\b(medcls_tui/[a-z_]+)/", doc))
    files = set(re.findall(r"\b((?:core|medcls_tui)/[\w/]+\.py)\b", doc))
    assert len(packages) >= 8 and len(files) >= 6, (packages, files)
    missing = sorted(p for p in packages | files if not (REPO / p).exists())
    assert missing == []
    real = {p.name for p in (REPO / "core").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert real <= {p.split("/")[1] for p in packages}, "a core package the doc does not draw"
