"""The house: the lesson and the commands at the top, support in folders named for their role, and imports
that point one way -- down the floors below, never up, with no cycle (lazy imports inside functions count)."""
import ast

from data import REPO

# Floors, lowest first: a module may import its own floor's modules (no cycle) and any floor below.
FLOORS = [
    ["formats"],                          # files on disk, and command lines read one way
    ["bert", "simcse", "data"],           # the network, the method, the data
    ["extras"],                           # the paper's side roads: MLM, augmentations, gradient caching
    ["infra"],                            # what a run needs: settings, run folders, speed, processes
    ["tool", "eval_sts", "eval_transfer"],  # using a model, the evaluations
    ["train"],                            # the loop
    ["experiments"],                      # grids of runs
    ["ablate", "demo"],                   # commands on top of it all
    ["bench"],                            # measurements of everything
]
FLOOR = {part: i for i, parts in enumerate(FLOORS) for part in parts}


def modules():
    """{dotted name: path} of every module of the project (tests, notebooks and docs aside)."""
    found = {}
    for path in REPO.rglob("*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in ("tests", "notebooks", "docs", "runs", "data") or rel.parts[0].startswith("."):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def imports(path, known):
    """The project's modules that the file imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def test_the_top_level_holds_the_lesson_and_the_commands_only():
    top = sorted(p.name for p in REPO.glob("*.py"))
    assert len(top) <= 9, top
    assert {"bert.py", "simcse.py", "train.py", "data.py", "eval_sts.py"} <= set(top)


def test_imports_point_down_the_floors_and_never_round_a_cycle():
    known = modules()
    part = lambda module: module.split(".")[0]
    assert {part(m) for m in known} <= set(FLOOR), "a new part: give it a floor"
    edges = {m: imports(path, known) - {m} for m, path in known.items()}
    upward = [f"{m} -> {t}" for m, targets in edges.items() for t in targets
              if FLOOR[part(t)] > FLOOR[part(m)]]
    assert not upward, upward
    state = {}

    def visit(m, path):  # depth-first search for a cycle of modules
        state[m] = "open"
        for t in edges[m]:
            assert state.get(t) != "open", " -> ".join(path + [t])
            if t not in state:
                visit(t, path + [t])
        state[m] = "done"
    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    parts = {}
    for m, targets in edges.items():
        parts.setdefault(part(m), set()).update(part(t) for t in targets if part(t) != part(m))
    both_ways = [(a, b) for a, bs in parts.items() for b in bs if a in parts.get(b, ())]
    assert not both_ways, both_ways  # two rooms importing each other: a cycle of rooms
