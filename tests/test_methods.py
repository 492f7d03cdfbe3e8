"""The method registry: every list of methods derives from it, and a new method needs only its spec,
its policy and its tests."""

import ast
from pathlib import Path

import numpy as np
import pytest

from flake_lib import latency as lt
from flake_lib import methods, scaleout, serving, style
from flake_lib.serving import policies

LIBRARY = Path(__file__).resolve().parents[1] / "flake_lib"


def _named(node: ast.AST) -> set:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in methods.REGISTRY}
    if isinstance(node, ast.Dict) and all(isinstance(v, (ast.Name, ast.Constant)) for v in node.values):
        return {k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in methods.REGISTRY}
    return set()


def _literal_method_lists(tree: ast.Module) -> list[int]:
    """Lines where a list of methods is written out: a module-level constant holding three or more
    method keys, a lookup table keyed by three or more (values: names or strings), or a membership test
    against three or more (``method in ("pm", "flake", "approxifer")``: a property of the methods, which
    belongs in their specs). A claim naming the methods it compares (Flake < PM < SRP) is none of these."""
    found = [node.lineno for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             and node.value is not None and len(_named(node.value)) >= 3]
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and len(_named(node)) >= 3:
            found.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            if any(len(_named(c)) >= 3 for c in node.comparators):
                found.append(node.lineno)
    return sorted(set(found))


def test_the_method_list_detector_finds_each_kind_of_list():
    tree = ast.parse('METHODS = ("none", "srp", "pm")\nNAMES = {"srp": "SRP", "pm": "PM", "nkd": "NKD"}\n'
                     'def f(m):\n    ok = ("flake", "pm", "srp")\n    return m in ("pm", "flake", "approxifer")\n')
    assert _literal_method_lists(tree) == [1, 2, 5]


def test_the_registry_is_the_only_list_of_methods_in_the_library():
    listed = {}
    for path in LIBRARY.rglob("*.py"):
        if path.name == "methods.py" and path.parent == LIBRARY:
            continue
        lines = _literal_method_lists(ast.parse(path.read_text()))
        if lines:
            listed[str(path.relative_to(LIBRARY))] = lines
    assert not listed, f"lists of methods outside flake_lib/methods.py (derive them from the registry): {listed}"


def test_every_consumer_agrees_with_the_registry():
    keys = list(methods.REGISTRY)
    assert keys[:5] == ["none", "srp", "pm", "nkd", "flake"]
    assert methods.keys(paper=True) == ("srp", "pm", "nkd", "flake")
    looks = [(s.color, s.marker) for s in methods.REGISTRY.values()]
    assert len({c for c, _ in looks}) == len(looks) and len({m for _, m in looks}) == len(looks)
    assert {s.color for s in methods.REGISTRY.values()} <= set(style.OKABE_ITO.values())
    assert style.order(reversed(keys)) == keys  # legends, tables and the report follow the registry
    models = methods.worker_models()
    for key, spec in methods.REGISTRY.items():
        assert style.label(key) == spec.name == methods.name(key)
        assert style.method_of(spec.name) == key
        assert issubclass(spec.policy_class(), policies.Policy)
        dep = lt.deployment(key, instances=2)
        extra = dep.parity + dep.backup
        assert len(extra) == (2 if spec.redundant else 0)
        assert all(models[w.rstrip("0123456789")] == spec.model for w in extra)
        assert (dep.parity == extra) == (spec.role == "parity") or not extra
    with pytest.raises(ValueError, match="unknown method 'banana'; known: none, srp"):
        lt.deployment("banana")


def test_the_queueing_model_refuses_a_method_it_has_no_rule_for():
    arrivals = np.arange(1, 9) * 0.01
    service = {"F": 0.002, "PM": 0.002, "Flake": 0.001, "NKD": 0.001}
    for key, spec in methods.REGISTRY.items():
        if spec.redundant is not None and spec.queueing is None:
            with pytest.raises(ValueError, match="no rule"):
                lt.queueing.latencies(key, arrivals, np.zeros(8), service, 0.01)
        else:
            assert len(lt.queueing.latencies(key, arrivals, np.zeros(8), service, 0.01)) == 8


FLEET_FAULTS = {"straggler_rate_per_s": 2.0, "straggler_reference_ms": 20.0, "pause_rate_per_s": 0.0,
                "pause_ms": 100.0}


class TwoChances(policies.Backup):
    """A toy method: an unavailable query is re-run on a backup instance of F (as SRP), under a
    method name and worker prefix of its own."""

    kind = "replica"


@pytest.fixture
def toy():
    spec = methods.register(methods.MethodSpec("toy", "toy method", TwoChances, "#123456", "*", redundant="TY",
                                               model="F", role="backup", fleet=True, queueing="rerun"))
    yield spec
    methods.unregister("toy")


def test_a_new_method_is_its_spec_its_policy_and_nothing_else(toy):
    # the serving benchmark (on the discrete-event model): one straggler beyond the bound, re-run on TY0
    images, labels = np.zeros((16, 3, 4, 4), dtype=np.float32), np.zeros(16, dtype=int)
    bench = lt.Bench.simulated("native", lt.workers_for(["none", "toy"]), {"F": [2.0]}, images, labels)
    assert "TY0" in bench.workers
    delays = np.zeros(16)
    delays[4] = 0.2
    schedule = lt.Schedule(100.0, np.arange(16) * 0.01, np.arange(16), lt.FaultPlan(delays), seed=0)
    frame, info = bench.run("toy", schedule, bound_ms=10.0)
    assert frame.loc[4, "outcome"] == "replica" and frame.loc[4, "answered_by"] == "TY0"
    assert info["n_failed"] == 0 and frame.loc[4, "latency_ms"] < 20
    # the queueing model, the fleet model, the figures and the report know it
    assert lt.queueing.latencies("toy", schedule.arrivals, delays, {"F": 0.002}, 0.01)[4] < 20
    fleet = scaleout.fleet_run("toy", deployed=2, k=2, per_instance_qps=20.0, n_queries=40,
                               service_ms={"F": np.full(5, 1.0)}, parameters=FLEET_FAULTS,
                               slowdowns=np.linspace(1, 3, 10), link_ms=0.0, frontend_ms=0.0, bound_ms=10.0,
                               mode="native")
    assert fleet["n_failed"] == 0
    assert style.label("toy") == "toy method" and style.color("toy") == "#123456"
    assert style.order(["toy", "pm", "none"]) == ["none", "pm", "toy"]
    assert serving.Frontend(bench.transport, "toy", lt.deployment("toy")).policy.__class__ is TwoChances


def test_a_method_that_takes_another_methods_look_is_refused(toy):
    with pytest.raises(ValueError, match="another method's look"):
        methods.register(methods.MethodSpec("copy", "copy", TwoChances, "#123456", "*"))
    with pytest.raises(ValueError, match="already registered"):
        methods.register(toy)
