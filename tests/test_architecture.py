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
