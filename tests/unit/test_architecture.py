"""The layout's rules, checked on the source: no import cycles, every import points down.

Module-level imports are read with ``ast`` (``if TYPE_CHECKING:`` blocks left out: they never run).
The layers, lowest first; a module may import its own layer and those below, never one above:

    domain → config, provenance, net, ray_session, lazy → data, features, metrics, risk, ledger, explain,
    observability → ml, models → registry, broker → arena, train → serve, dashboard, tournament →
    commands, cli

An import inside a function hides a cycle instead of removing it, so ``titan_ray`` imports live at
the top of each module. The one way to load code on demand is by name through ``importlib`` (the
heavy model kinds, the Alpaca provider, the CLI's subcommands), never an import statement.
"""

from __future__ import annotations

import ast
import base64
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import titan_ray
from titan_ray.config import ModelSpec
from titan_ray.domain.bars import BarBatch
from titan_ray.domain.decisions import Decisions

ROOT = Path(titan_ray.__file__).parent

LAYERS: list[set[str]] = [
    {"domain"},
    {"config", "provenance", "net", "ray_session", "lazy", "tracking"},
    {"data", "features", "metrics", "risk", "ledger", "explain", "observability"},
    {"ml", "models"},
    {"registry", "broker"},
    {"arena", "train"},
    {"lifecycle"},
    {"serve", "dashboard", "tournament"},
    {"commands", "cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("titan_ray", *path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _target(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            src = ".".join([*base, *([node.module] if node.module else [])])
        else:
            src = node.module or ""
        names = [f"{src}.{a.name}" if f"{src}.{a.name}" in MODULES else src for a in node.names]
    out = []
    for name in names:
        if name.split(".")[0] != "titan_ray":
            continue
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def _imports() -> tuple[dict[str, set[str]], list[str]]:
    """Module-level titan_ray imports per module, and every titan_ray import inside a function."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    nested: list[str] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, in_function: bool, module: str = module, is_package: bool = is_package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    for target in _target(module, child, is_package):
                        if in_function:
                            nested.append(f"{module}:{child.lineno} imports {target}")
                        else:
                            graph[module].add(target)
                elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                    visit(child, True)
                elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    visit(ast.Module(body=child.orelse, type_ignores=[]), in_function)
                else:
                    visit(child, in_function)

        visit(tree, False)
    return graph, nested


GRAPH, NESTED = _imports()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module}: its package {top!r} has no layer in LAYERS; add it where it belongs")


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_titan_ray_modules() -> None:
    assert len(GRAPH) > 50  # the walk saw the package
    assert _cycles(GRAPH) == []


def test_no_titan_ray_imports_inside_functions() -> None:
    assert NESTED == [], "load on demand by name (importlib) or import at the top:\n" + "\n".join(NESTED)


def test_every_import_points_down() -> None:
    upward = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in sorted(GRAPH.items())
        for t in sorted(targets)
        if t != "titan_ray" and _layer(t) > _layer(m)
    ]
    assert upward == [], "\n".join(upward)


def test_domain_imports_only_itself() -> None:
    outside = {
        f"{m} imports {t}" for m, ts in GRAPH.items() if m.startswith("titan_ray.domain")
        for t in ts if not t.startswith("titan_ray.domain")
    }
    assert outside == set()


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_validating_a_config_of_every_model_kind_imports_no_torch() -> None:
    out = _run(
        "import sys\n"
        "from titan_ray.config import parse_config\n"
        "from titan_ray.models.kinds import MODEL_KINDS\n"
        "cfg = parse_config({'replay': {'warmup_bars': 5000},\n"
        "    'models': [{'name': k, 'kind': k,\n"
        "                'params': {'inputs': ['sma_crossover']} if k == 'allocator' else {}} for k in MODEL_KINDS]})\n"
        "print(len(cfg.models), sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    n, loaded = out.split(" ", 1)
    assert int(n) >= 9
    assert loaded.strip() == "[]"


def test_a_bad_parameter_of_a_torch_model_is_caught_without_torch() -> None:
    out = _run(
        "import sys\n"
        "from titan_ray.config import ConfigError, parse_config\n"
        "try:\n"
        "    parse_config({'replay': {'warmup_bars': 5000},\n"
        "                  'models': [{'name': 'l', 'kind': 'lstm_attention', 'params': {'hiden': 8}}]})\n"
        "except ConfigError as err:\n"
        "    print('hiden' in str(err), 'torch' in sys.modules)\n"
    )
    assert out.split() == ["True", "False"]


@pytest.mark.parametrize("reader", ["titan_ray.arena.results", "titan_ray.arena.views", "titan_ray.commands.why"])
def test_reading_a_run_imports_no_model_code(reader: str) -> None:
    out = _run(
        f"import sys, {reader}\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('titan_ray.models')))\n"
    )
    assert out.strip() == "[]"


# A rule model's actor process: what Ray imports to run ModelActor with sma_crossover & co, unpickle
# its arguments and results, and decide. Each heavy library costs every such process tens of MB and
# up to a second of CPU; with dozens of model actors that was the arena's start-up (issue 15).
RULE_ACTOR_MUST_NOT_IMPORT = ("pandas", "pyarrow", "torch", "shap", "lightgbm", "scipy", "sklearn")

_RULE_ACTOR_PROBE = """
import base64, json, pickle, sys, traceback
heavy, pulled = set(sys.argv[1].split(",")), {}

class Watch:  # first on the meta path: sees every import, finds nothing, so the real finders run
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in heavy and top not in pulled:
            pulled[top] = [f"{f.filename}:{f.lineno}: {f.line}" for f in traceback.extract_stack()[:-1]
                           if "importlib" not in f.filename]
        return None

sys.meta_path.insert(0, Watch())
import titan_ray.models.actor, titan_ray.models.baselines, titan_ray.models.kinds
from titan_ray.models.kinds import BASELINE_KINDS, build_model

spec, bars, decisions = (pickle.loads(base64.b64decode(blob)) for blob in sys.argv[2:])
for kind in BASELINE_KINDS:
    model = build_model(kind, kind, {}, bars.symbols, seed=1)
    model.observe(bars.slice(0, 40))
    model.decide(bars.slice(40, len(bars)))
print(json.dumps(pulled))
"""


def _pickled_actor_messages() -> list[str]:
    t = 80
    ts = np.datetime64("2024-03-08T14:30", "ns").astype(np.int64) + np.arange(t, dtype=np.int64) * 900 * 10**9 * 7
    close = 100 * np.exp(np.cumsum(np.sin(np.arange(t * 2).reshape(t, 2) / 5) / 50, axis=0))
    bars = BarBatch.from_arrays(ts, ("AAA", "BBB"), open=close, high=close * 1.01, low=close * 0.99, close=close,
                                volume=np.full((t, 2), 1000.0))
    spec = ModelSpec(name="sma", kind="sma_crossover")
    decisions = Decisions("sma", 40, np.zeros((t - 40, 2)))
    return [base64.b64encode(pickle.dumps(x)).decode() for x in (spec, bars, decisions)]


def test_a_rule_model_actor_imports_no_heavy_library() -> None:
    out = _run_args(_RULE_ACTOR_PROBE, ",".join(RULE_ACTOR_MUST_NOT_IMPORT), *_pickled_actor_messages())
    pulled = json.loads(out.strip().splitlines()[-1])
    assert pulled == {}, "a rule model's actor imported heavy libraries; first import of each:\n" + "\n\n".join(
        f"{name}, imported from:\n  " + "\n  ".join(stack) for name, stack in pulled.items()
    )


def test_the_rule_actor_probe_sees_a_heavy_import() -> None:
    # the probe must be able to fail: the same script, told that numpy is heavy, names the module
    # and line that imported it first
    out = _run_args(_RULE_ACTOR_PROBE, "numpy,pandas", *_pickled_actor_messages())
    pulled = json.loads(out.strip().splitlines()[-1])
    assert list(pulled) == ["numpy"]
    assert any("titan_ray" in line and "import numpy" in line for line in pulled["numpy"]), pulled["numpy"]


def _run_args(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout
