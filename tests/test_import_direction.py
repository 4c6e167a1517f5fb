"""The package's dependencies run one way:

    main_lib / experiment / tools (-> cli) -> (serving) -> executor -> (model_fns) -> modeling /
    dataloader / evaluation -> ops -> hyperparameters

`executor` runs any model fn through the contract in `core` and imports no model code;
`model_fns` join networks, parsers and evaluators; `modeling`, `dataloader` and `evaluation`
never import each other. The imports of every module (top level and inside functions) are
parsed, so a wrong import fails here before it tangles the tree.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "detection"

# subpackage -> the subpackages it may import (itself always allowed).
ALLOWED = {
    "hyperparameters": set(),
    "core": set(),
    "cli": {"core"},
    "configs": {"hyperparameters"},
    "ops": set(),
    "dataloader": {"core", "ops", "hyperparameters"},
    "modeling": {"ops", "hyperparameters"},
    "evaluation": {"ops", "hyperparameters"},
    "model_fns": {"core", "modeling", "dataloader", "evaluation", "ops", "hyperparameters"},
    "executor": {"core", "hyperparameters"},
    "main_lib": {"cli", "configs", "core", "hyperparameters", "experiment"},
    "experiment": {"cli", "core", "executor", "model_fns", "dataloader", "hyperparameters"},
    "serving": {
        "core",
        "hyperparameters",
        "configs",
        "ops",
        "dataloader",
        "model_fns",
        "executor",
    },
    "tools": {
        "cli",
        "main_lib",
        "configs",
        "core",
        "hyperparameters",
        "ops",
        "dataloader",
        "modeling",
        "evaluation",
        "model_fns",
        "executor",
        "serving",
    },
}


def imported_subpackages(source):
    """The `detection.<name>` subpackages a module's source imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "detection":
                modules = [f"detection.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "detection" and len(parts) > 1:
                names.add(parts[1])
    return names


def violations(subpackage, source):
    """The subpackages `source` (a module of `subpackage`) imports but must not."""
    allowed = ALLOWED[subpackage] | {subpackage}
    return sorted(imported_subpackages(source) - allowed)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts == ("__init__.py",):
            continue
        subpackage = relative.parts[0].removesuffix(".py")
        yield subpackage, path


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted({sub for sub, _ in _modules() if sub not in ALLOWED})
    assert not unknown, f"add {unknown} to ALLOWED in {__file__}"


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_imports_run_one_way(subpackage):
    bad = {
        str(path.relative_to(PACKAGE.parent)): violations(subpackage, path.read_text())
        for sub, path in _modules()
        if sub == subpackage
    }
    bad = {path: names for path, names in bad.items() if names}
    assert not bad, f"imports against the direction: {bad}"


def test_allowed_imports_have_no_cycle():
    visiting, done = set(), set()

    def visit(node, trail):
        assert node not in visiting, f"cycle: {' -> '.join(trail + [node])}"
        if node in done:
            return
        visiting.add(node)
        for target in ALLOWED[node]:
            visit(target, trail + [node])
        visiting.remove(node)
        done.add(node)

    for node in ALLOWED:
        visit(node, [])


@pytest.mark.parametrize(
    "subpackage, source, expected",
    [
        ("ops", "from detection.executor import trainer", ["executor"]),
        ("modeling", "def f():\n    from detection.dataloader import anchors\n", ["dataloader"]),
        ("executor", "import detection.modeling.networks.factory", ["modeling"]),
        ("dataloader", "from detection import evaluation", ["evaluation"]),
        ("model_fns", "from detection.modeling import flops\nimport numpy", []),
    ],
)
def test_a_wrong_import_is_caught(subpackage, source, expected):
    assert violations(subpackage, source) == expected
