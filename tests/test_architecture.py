"""daemon/ARCHITECTURE.md, held true: every module named there, small modules, no import cycle,
the layering rules it states, and transactions begun and ended only by stores/transactions.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

DAEMON = Path(__file__).resolve().parent.parent / "daemon"
MAX_MODULE_LINES = 400
# The one module that may begin, commit or roll back a transaction by SQL.
TRANSACTION_HELPERS = {"stores/transactions.py"}
# A statement that begins or ends a transaction, at the start of a string or after a `;`
# (savepoints, `ROLLBACK TO`, are the writer's to use). SQL is written upper case here.
_TRANSACTION_SQL = re.compile(r"(?:^|;)\s*(?:BEGIN|COMMIT|ROLLBACK(?!\s+TO\b))\b")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(DAEMON.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.Module, package: str) -> set[str]:
    """Every module named by an import anywhere in the file (function bodies too), except
    under `if TYPE_CHECKING:`, which never runs."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _imports() -> dict[str, set[str]]:
    """Every module's imports, by module name, third-party ones included."""
    found: dict[str, set[str]] = {}
    for path in DAEMON.rglob("*.py"):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found[name] = _imported(ast.parse(path.read_text(encoding="utf-8")), package)
    return found


def _graph() -> dict[str, set[str]]:
    """Which daemon module imports which. Importing `daemon.a.b` runs `daemon/a/__init__.py`
    first, so a module outside package `daemon.a` depends on that package's init too."""
    imports = _imports()
    graph: dict[str, set[str]] = {}
    for name, names in imports.items():
        edges = {m for m in names if m in imports}
        for module in list(edges):
            parts = module.split(".")
            edges.update(
                package
                for package in (".".join(parts[:i]) for i in range(2, len(parts)))
                if not (name == package or name.startswith(package + "."))
            )
        graph[name] = edges - {name}
    return graph


def _imported_by(package: str) -> set[str]:
    """What the modules of a package import from outside it."""
    return {
        m
        for name, names in _imports().items()
        if name == package or name.startswith(package + ".")
        for m in names
        if m != package and not m.startswith(package + ".")
    }


def _within(names: set[str], prefixes: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strong(node)
    return found


def test_no_module_over_400_lines() -> None:
    long = {
        str(path.relative_to(DAEMON.parent)): n
        for path in DAEMON.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_import_cycle_between_daemon_modules() -> None:
    assert _cycles(_graph()) == []


def test_a_package_init_counts_for_imports_from_outside_the_package() -> None:
    graph = _graph()
    assert "daemon.stores" in graph["daemon.app"]  # app imports daemon.stores.journal etc.
    assert "daemon.cli" not in graph["daemon.cli.cache"]  # a sibling is not an import of init


def test_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_is_named_in_the_architecture_guide() -> None:
    guide = (DAEMON / "ARCHITECTURE.md").read_text(encoding="utf-8")
    unnamed = [
        str(path.relative_to(DAEMON))
        for path in sorted(DAEMON.rglob("*.py"))
        if f"`{path.relative_to(DAEMON)}`" not in guide
    ]
    assert unnamed == []


def test_the_guide_names_only_modules_that_exist() -> None:
    guide = (DAEMON / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_/]+\.py)`", guide))
    assert {n for n in named if not (DAEMON / n).is_file()} == set()


def test_library_knows_nothing_of_anyio_sqlite_the_stores_or_the_socket() -> None:
    forbidden = ("anyio", "sqlite3", "daemon.stores", "daemon.control", "daemon.app")
    assert _within(_imported_by("daemon.library"), forbidden) == set()


def test_library_needs_only_models_errors_events_and_paths() -> None:
    """library/ is handed what it needs (a progress callback, the agent's plist): from the rest
    of the daemon it imports only the shared vocabulary, in function bodies too, so nothing of
    watch/ or mac/ comes in by the back door."""
    daemon_imports = _imported_by("daemon.library") & set(_imports())
    assert daemon_imports <= {"daemon.models", "daemon.errors", "daemon.events", "daemon.paths"}


def test_an_import_inside_a_function_counts() -> None:
    tree = ast.parse("def f():\n    from daemon.mac.launchd import installed_plist\n")
    assert "daemon.mac.launchd" in _imported(tree, "daemon.library")


def test_stores_need_only_models_events_and_errors() -> None:
    daemon_imports = _imported_by("daemon.stores") & set(_imports())
    assert daemon_imports <= {"daemon.models", "daemon.events", "daemon.errors"}


def test_control_never_imports_app_service_watch_or_stores() -> None:
    forbidden = (
        "daemon.app",
        "daemon.service.core",
        "daemon.watch",
        "daemon.stores",
        "daemon.cli",
    )
    assert _within(_imported_by("daemon.control"), forbidden) == set()


def _transaction_sql(source: str) -> list[str]:
    """The string constants of a module that begin or end a transaction (docstrings aside)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and _TRANSACTION_SQL.search(node.value)
    ]


def test_no_transaction_begun_or_ended_by_hand_outside_the_transaction_helpers() -> None:
    found = {
        str(path.relative_to(DAEMON)): sql
        for path in sorted(DAEMON.rglob("*.py"))
        if str(path.relative_to(DAEMON)) not in TRANSACTION_HELPERS
        and (sql := _transaction_sql(path.read_text(encoding="utf-8")))
    }
    assert found == {}
    helpers = [DAEMON / name for name in TRANSACTION_HELPERS]
    assert all(_transaction_sql(path.read_text(encoding="utf-8")) for path in helpers)


def test_the_transaction_rule_sees_sql_written_by_hand() -> None:
    source = """
def f(conn):
    \"\"\"BEGIN in a docstring is prose.\"\"\"
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("SAVEPOINT op")
    conn.execute("ROLLBACK TO op")
    conn.executescript("PRAGMA x; COMMIT")
    conn.execute(" ROLLBACK")
    log.info("Begin or commit: not SQL")
"""
    assert _transaction_sql(source) == ["BEGIN IMMEDIATE", "PRAGMA x; COMMIT", " ROLLBACK"]


# Where an attribute of an object other than `self` may be assigned (besides the rule in
# `_foreign_assignments`), by module and the name the target starts from, and why.
FOREIGN_ASSIGNMENTS_ALLOWED = {
    ("cli/__init__.py", "node"): "argparse parsers are configured by setting their attributes",
    ("cli/__init__.py", "action"): "argparse actions are configured by setting their attributes",
    ("cli/completion.py", "action"): "shtab reads its completion hints from argparse actions",
    ("library/plist_tracks.py", "parser"): "expat takes its handlers as parser attributes",
    ("logs.py", "logging"): "logging.raiseExceptions is the standard library's own switch",
    ("watch/watcher.py", "group"): "watchdog's inotify group takes its overflow callback so",
    ("stores/writer.py", "op"): "a queued write: made by submit, filled in by its round",
}
# The one function that may wire objects together.
BUILD_FUNCTION = ("app.py", "build")


def _made_here(func: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names the function binds to what a call returned: objects it made (or was handed new)."""
    names: set[str] = set()
    for node in ast.walk(func):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Call):
                names.add(target.id)
            elif isinstance(target, ast.Tuple):
                values = node.value.elts if isinstance(node.value, ast.Tuple) else None
                for i, element in enumerate(target.elts):
                    made = isinstance(node.value, ast.Call) or (
                        values is not None and isinstance(values[i], ast.Call)
                    )
                    if isinstance(element, ast.Name) and made:
                        names.add(element.id)
    return names


def _own_parts(cls: ast.ClassDef) -> set[str]:
    """Attributes a class's `__init__` sets to an object it makes there (`self.status =
    ScanStatus()`): its own parts, which its methods may fill in."""
    parts: set[str] = set()
    for item in cls.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            for node in ast.walk(item):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                    for target in node.targets:
                        if (
                            isinstance(target, ast.Attribute)
                            and isinstance(target.value, ast.Name)
                            and target.value.id == "self"
                        ):
                            parts.add(target.attr)
    return parts


def _foreign_assignments(tree: ast.Module) -> list[tuple[str, str, int, str]]:
    """Assignments to another object's attribute: (function, root name, line, target).

    Allowed, and so not listed: `self.x = ...` and `cls.x = ...`; `self.part.x = ...` where
    `part` is one the class made in its `__init__`; `obj.x = ...` where the same function made
    `obj` (bound it to a call's result).
    """
    found: list[tuple[str, str, int, str]] = []

    def visit(node: ast.AST, func: str, made: set[str], parts: set[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, func, made, _own_parts(child))
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name, _made_here(child), parts)
                continue
            targets: list[ast.expr] = []
            if isinstance(child, ast.Assign):
                targets = list(child.targets)
            elif isinstance(child, ast.AugAssign | ast.AnnAssign):
                targets = [child.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                for element in elements:
                    if not isinstance(element, ast.Attribute):
                        continue
                    chain: list[ast.expr] = []
                    root: ast.expr = element
                    while isinstance(root, ast.Attribute):
                        chain.append(root)
                        root = root.value
                    name = root.id if isinstance(root, ast.Name) else ast.unparse(root)
                    if name in ("self", "cls") and len(chain) == 1:
                        continue
                    if name == "self" and len(chain) == 2 and chain[-1].attr in parts:
                        continue
                    if name in made:
                        continue
                    found.append((func, name, child.lineno, ast.unparse(element)))
            visit(child, func, made, parts)

    visit(tree, "", set(), set())
    return found


def test_no_attribute_of_another_object_is_assigned_outside_the_build_function() -> None:
    wrong = [
        f"{path.relative_to(DAEMON)}:{line} {target}"
        for path in sorted(DAEMON.rglob("*.py"))
        for func, name, line, target in _foreign_assignments(
            ast.parse(path.read_text(encoding="utf-8"))
        )
        if (str(path.relative_to(DAEMON)), func) != BUILD_FUNCTION
        and (str(path.relative_to(DAEMON)), name) not in FOREIGN_ASSIGNMENTS_ALLOWED
    ]
    assert wrong == []


def test_foreign_assignment_finder_tells_wiring_from_owning() -> None:
    tree = ast.parse(
        "class Housekeeping:\n"
        "    def __init__(self, writer):\n"
        "        self.writer = writer\n"
        "        self.status = Status()\n"
        "    def renew(self, db):\n"
        "        self.writer.conn = db.conn\n"
        "        self.status.error = None\n"
        "        db.read_conn, self.count = None, 0\n"
        "def start(service):\n"
        "    service.scanner = Scanner()\n"
        "    result = Read()\n"
        "    result.stat, first = None, 1\n"
    )
    assert [(f, n, t) for f, n, _, t in _foreign_assignments(tree)] == [
        ("renew", "self", "self.writer.conn"),
        ("renew", "db", "db.read_conn"),
        ("start", "service", "service.scanner"),
    ]


# -- no module-level mutable state read across packages ----------------------------------------
#
# A module-level name is *state* when the module rebinds it (`global`) or mutates it in place
# (`name[k] = v`, `del name[k]`, `name.append(...)`, a ContextVar's `.set(...)`): constants,
# loggers and tables built once are not. Two rules, checked on the source:
# 1. a module that rebinds a name with `global` is imported by no module of another package;
# 2. no module imports a state name from a module of another package.
# Another package then reaches such state only through a value it is handed, never through an
# import. Exceptions, each with its reason:
REBINDING_MODULES_IMPORTED_ACROSS_PACKAGES = {
    # Logging is process-wide by nature (stdlib logging and structlog are): the command that
    # owns the console configures it once and stops it once; no caller reads its state back.
    "daemon.logs": "the logging pipeline of the process",
}
_MUTATORS = frozenset(
    {"append", "extend", "insert", "remove", "pop", "popitem", "clear", "update", "add",
     "discard", "setdefault", "sort", "reverse", "appendleft", "set", "reset"}
)  # fmt: skip


def _package_of(module: str) -> str:
    path = DAEMON.parent / Path(*module.split("."))
    return module if (path / "__init__.py").exists() else module.rpartition(".")[0]


def _module_state(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names rebound with `global`, module-level names the module rebinds or mutates)."""
    assigned: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(
            node.value,
            ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp | ast.Call,
        ):
            assigned.update(t.id for t in targets if isinstance(t, ast.Name))
    rebound: set[str] = set()
    mutated: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            rebound.update(node.names)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            if isinstance(node.value, ast.Name):
                mutated.add(node.value.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.attr in _MUTATORS
        ):
            mutated.add(node.func.value.id)
    return rebound, rebound | (assigned & mutated)


def _states() -> dict[str, tuple[set[str], set[str]]]:
    return {
        _module_name(path): _module_state(ast.parse(path.read_text(encoding="utf-8")))
        for path in DAEMON.rglob("*.py")
    }


def _across_packages(imports: dict[str, set[str]], module: str) -> set[str]:
    """The modules of other packages that import `module` (or a name from it)."""
    package = _package_of(module)
    return {
        name for name, names in imports.items() if module in names and _package_of(name) != package
    }


def test_no_module_rebinds_state_that_another_package_imports() -> None:
    imports = _imports()
    found = {
        module: sorted(_across_packages(imports, module))
        for module, (rebound, _state) in _states().items()
        if rebound and module not in REBINDING_MODULES_IMPORTED_ACROSS_PACKAGES
    }
    assert {m: users for m, users in found.items() if users} == {}


def test_no_module_imports_mutable_state_from_another_package() -> None:
    imports = _imports()
    found = sorted(
        f"{user} imports {module}.{name}"
        for module, (_rebound, state) in _states().items()
        for name in state
        for user in _across_packages(imports, f"{module}.{name}")
    )
    assert found == []


def test_the_state_rules_see_rebinding_and_mutation() -> None:
    source = (
        "import contextvars\n"
        "LIMIT = 3\n"
        "TABLE = {'a': 1}\n"
        "_seen = []\n"
        "_current = contextvars.ContextVar('c')\n"
        "_active = None\n"
        "def f(x):\n"
        "    global _active\n"
        "    _active = x\n"
        "    _seen.append(x)\n"
        "    _current.set(x)\n"
        "    return TABLE['a'] + LIMIT\n"
    )
    rebound, state = _module_state(ast.parse(source))
    assert rebound == {"_active"}
    assert state == {"_active", "_seen", "_current"}


def test_every_exception_to_the_state_rules_names_a_module_that_rebinds() -> None:
    states = _states()
    for module in REBINDING_MODULES_IMPORTED_ACROSS_PACKAGES:
        assert module in states and states[module][0], module


def _guide_table() -> list[tuple[list[str], str]]:
    """The guide's "who owns what" rows: (packages, modules cell)."""
    guide = (DAEMON / "ARCHITECTURE.md").read_text(encoding="utf-8")
    rows = []
    for line in guide.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`") and cells[1].endswith("/`"):
            rows.append((re.findall(r"`([a-z_]*/)`", cells[1]), cells[2]))
    return rows


# The root keeps the spine (app.py) and the shared vocabulary; every other module belongs to
# the package of its area.
MAX_ROOT_MODULES = 8


def test_the_packages_are_the_areas_the_guide_states() -> None:
    rows = _guide_table()
    stated = {package for packages, _ in rows for package in packages} - {"daemon/"}
    packages = {f"{path.parent.relative_to(DAEMON)}/" for path in DAEMON.glob("*/__init__.py")}
    assert packages == stated
    for packages, modules in rows:
        # Each row names only modules of its own packages.
        for module in re.findall(r"`([a-z_/]+\.py)`", modules):
            package = module.rpartition("/")[0] + "/" if "/" in module else "daemon/"
            assert package in packages, (module, packages)


def test_the_root_holds_the_spine_and_the_shared_vocabulary_only() -> None:
    root = sorted(
        p.name for p in DAEMON.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    assert len(root) <= MAX_ROOT_MODULES, root
