"""The methods, in one registry: every other list of methods in Flake is derived from :data:`REGISTRY`.

A method is what answers a query its deployed instance of ``F`` does not answer in time. Each has one
:class:`MethodSpec`: the policy class the frontend runs (:mod:`flake_lib.serving.policies`), which
redundant instances it needs (worker-name prefix, the model they serve, their role), whether its
queries form coding groups, whether the fleet model and the queueing model can run it, its display
name and look, and whether it is one of the paper's four. The order of :data:`REGISTRY` is the order of
every table, legend and report (no redundancy, the paper's four in the order of its tables, the peers).

=============  ================  ========  ====  ========  =====  ========================================
key            shown as          workers   runs  role      coded  what answers an unavailable query
=============  ================  ========  ====  ========  =====  ========================================
``none``       no redundancy     —         —     —         no     nothing: it waits for ``F``
``srp``        SRP               ``FR*``   F     backup    no     a replica of ``F`` re-runs it
``pm``         PM                ``PM*``   PM    parity    yes    ``F_p(p) − Σ F(x_i)`` (ParM)
``nkd``        NKD               ``NKD*``  NKD   backup    no     the NKD student re-runs it
``flake``      Flake             ``FP*``   Flake parity    yes    as PM with the compressed parity model,
                                                                  cache partners when a group cannot decode
``hedge``      hedge             ``FR*``   F     backup    no     a duplicate after the hedging delay
``equal``      equal resources   ``FR*``   F     backup    no     more instances of ``F`` (round-robin)
``approxifer`` ApproxIFER        ``FR*``   F     parity    yes    Berrut-coded queries to instances of F
=============  ================  ========  ====  ========  =====  ========================================

Adding a method: a policy class (:mod:`flake_lib.serving.policies`), one :func:`register` call (here
for a method of Flake's, in the caller's code for an experiment of one's own), and its tests.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

#: Roles of redundant instances: ``parity`` instances take coded (parity) queries, ``backup`` instances
#: re-run whole queries (or, for ``equal``, take a share of the originals).
ROLES = ("parity", "backup")
#: Rules of the analytic queueing model (:mod:`flake_lib.latency.queueing`): ``rerun`` (a backup re-runs
#: an unavailable query), ``parity`` (decoded from the group's parity output), ``partner`` (``parity``,
#: and cache partners when two members of a group are unavailable).
QUEUEING_RULES = ("rerun", "parity", "partner")


@dataclass(frozen=True)
class MethodSpec:
    """One method (see the module's table).

    ``policy``: the policy class, or its name in :mod:`flake_lib.serving.policies` (resolved when the
    frontend first needs it, so that this module imports nothing). ``redundant``: the prefix of its
    redundant workers' names (``None``: it has none); ``model``: the model they serve; ``role``:
    ``parity`` or ``backup``. ``coded``: its queries form coding groups of ``k``. ``fleet``: the fleet
    model (:mod:`flake_lib.scaleout`) can run it. ``queueing``: its rule in the analytic queueing model
    (``None``: the model has none; the model refuses it rather than guessing). ``paper``: one of the
    paper's four methods. ``color``/``marker``/``linestyle``: its look in every figure
    (:mod:`flake_lib.style`); ``aliases``: other labels that name it.
    """

    key: str
    name: str
    policy: str | type
    color: str
    marker: str
    linestyle: str = "-"
    redundant: str | None = None
    model: str | None = None
    role: str | None = None
    coded: bool = False
    fleet: bool = False
    queueing: str | None = None
    paper: bool = False
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if (self.redundant is None) != (self.model is None) or (self.redundant is None) != (self.role is None):
            raise ValueError(f"method {self.key!r}: redundant, model and role are given together or not at all")
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"method {self.key!r}: role {self.role!r} is not one of {ROLES}")
        if self.queueing is not None and self.queueing not in QUEUEING_RULES:
            raise ValueError(f"method {self.key!r}: queueing rule {self.queueing!r} is not one of {QUEUEING_RULES}")

    def policy_class(self) -> type:
        """The frontend's policy class of this method."""
        if isinstance(self.policy, type):
            return self.policy
        policies = importlib.import_module("flake_lib.serving.policies")
        return getattr(policies, self.policy)


#: Okabe–Ito colours (Okabe & Ito 2008, "Color Universal Design"): distinguishable under the common
#: colour-vision deficiencies; :mod:`flake_lib.style` uses them for everything else too.
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermilion": "#D55E00", "purple": "#CC79A7",
    "grey": "#999999",
}

#: Every method, by key, in the order of every table and legend.
REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (at the end of the order). A key, colour or marker already taken
    is an error unless ``replace`` (a key)."""
    if spec.key in REGISTRY and not replace:
        raise ValueError(f"method {spec.key!r} is already registered")
    taken = {(s.color, s.marker) for k, s in REGISTRY.items() if k != spec.key}
    if (spec.color, spec.marker) in taken:
        raise ValueError(f"method {spec.key!r}: colour {spec.color} with marker {spec.marker!r} is another "
                         "method's look")
    REGISTRY[spec.key] = spec
    return spec


def unregister(key: str) -> None:
    """Remove a method (a test's toy method)."""
    REGISTRY.pop(key, None)


def get(key: str) -> MethodSpec:
    """The spec of ``key``; a clear error naming the known methods otherwise."""
    try:
        return REGISTRY[key]
    except KeyError:
        raise ValueError(f"unknown method {key!r}; known: {', '.join(REGISTRY)}") from None


def keys(**having) -> tuple[str, ...]:
    """Method keys in registry order, those whose fields equal ``having`` (``keys(paper=True)``,
    ``keys(fleet=True)``, ``keys(role="parity")``)."""
    return tuple(k for k, s in REGISTRY.items() if all(getattr(s, f) == v for f, v in having.items()))


def name(key: str) -> str:
    """Display name: ``"pm"`` → ``"PM"``, ``"none"`` → ``"no redundancy"``."""
    return get(key).name


def worker_models() -> dict[str, str]:
    """``{worker-name prefix: model}``: ``F`` (the deployed instances) and each method's redundant kind."""
    table = {"F": "F"}
    for spec in REGISTRY.values():
        if spec.redundant is not None:
            if table.get(spec.redundant, spec.model) != spec.model:
                raise ValueError(f"worker prefix {spec.redundant!r} serves two models: "
                                 f"{table[spec.redundant]} and {spec.model}")
            table[spec.redundant] = spec.model
    return table


_c = OKABE_ITO
for _spec in (
    MethodSpec("none", "no redundancy", "Policy", _c["grey"], "x", ":", aliases=("no redundancy",), fleet=True),
    MethodSpec("srp", "SRP", "Backup", _c["black"], "s", redundant="FR", model="F", role="backup",
               fleet=True, queueing="rerun", paper=True, aliases=("f", "deployed", "replica")),
    MethodSpec("pm", "PM", "ParityModels", _c["blue"], "o", redundant="PM", model="PM", role="parity",
               coded=True, fleet=True, queueing="parity", paper=True, aliases=("parm",)),
    MethodSpec("nkd", "NKD", "Student", _c["green"], "^", redundant="NKD", model="NKD", role="backup",
               fleet=True, queueing="rerun", paper=True),
    MethodSpec("flake", "Flake", "Flake", _c["vermilion"], "D", redundant="FP", model="Flake", role="parity",
               coded=True, fleet=True, queueing="partner", paper=True),
    MethodSpec("hedge", "hedge", "Hedge", _c["purple"], "v", "--", redundant="FR", model="F", role="backup",
               queueing="rerun", aliases=("hedged",)),
    MethodSpec("equal", "equal resources", "Equal", _c["orange"], "P", "--", redundant="FR", model="F",
               role="backup", aliases=("equal resources", "equal-resources")),
    # ApproxIFER's policy sends a group's coded queries to the first K + S instances: not a fleet policy yet
    MethodSpec("approxifer", "ApproxIFER", "ApproxIFER", _c["sky blue"], "X", "-.", redundant="FR", model="F",
               role="parity", coded=True),
):
    register(_spec)
del _c, _spec
