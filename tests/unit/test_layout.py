"""The layout rules of the code, held by tests so they stay true: services/ laid out by area, small modules,
imports that only point down (events <- projections <- services), and SQL only where a table's owner keeps it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("events", "projections", "services", "jobmeter")
MAX_LINES = 300
BILLING_AREAS = ("ledger", "accounts", "keys", "meter", "subscriptions", "payg", "rapidapi", "stripe_adapter")
SQL_KEYWORDS = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM")


@dataclass(frozen=True)
class Module:
    path: Path  # relative to the repository root
    name: str  # dotted: services.payg.recharger

    @property
    def source(self) -> str:
        return (ROOT / self.path).read_text()

    def within(self, *packages: str) -> bool:
        return any(self.name == p or self.name.startswith(p + ".") for p in packages)


@cache
def modules() -> tuple[Module, ...]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            parts = list(relative.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append(Module(relative, ".".join(parts)))
    return tuple(found)


def imported(module: Module) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in the module, lazy ones inside functions included; relative imports
    resolved, and `from a import b` counted as both `a` and `a.b` (b may be a module)."""
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(module.source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def imports_of(module: Module, *targets: str) -> list[str]:
    return sorted({f"{module.path}:{line} imports {name}" for line, name in imported(module)
                   if any(name == t or name.startswith(t + ".") for t in targets)})


def violations(rule: str, found: list[str]) -> str:
    return f"{rule}:\n  " + "\n  ".join(found)


def test_services_holds_only_area_packages() -> None:
    flat = sorted(p.name for p in (ROOT / "services").glob("*.py") if p.name != "__init__.py")
    assert flat == [], violations("services/ holds packages by area, not flat modules", flat)


def test_no_module_is_over_the_line_limit() -> None:
    long = [f"{m.path}: {n} lines" for m in modules() if (n := len(m.source.splitlines())) > MAX_LINES]
    assert long == [], violations(f"modules of at most {MAX_LINES} lines", long)


def test_devtools_are_imported_only_by_devtools_and_the_cli() -> None:
    found = [v for m in modules() if not m.within("services.devtools", "services.cli")
             for v in imports_of(m, "services.devtools")]
    assert found == [], violations("only services.devtools and services.cli import services.devtools", found)


def test_imports_point_down_from_services_to_projections_to_events() -> None:
    found = [v for m in modules() if m.within("events") for v in imports_of(m, "projections", "services")]
    found += [v for m in modules() if m.within("projections") for v in imports_of(m, "services")]
    assert found == [], violations("events imports neither projections nor services; projections not services", found)


def test_the_platform_knows_no_billing_area() -> None:
    areas = [f"services.{area}" for area in BILLING_AREAS]
    found = [v for m in modules() if m.within("services.platform") for v in imports_of(m, *areas)]
    assert found == [], violations("services.platform imports no billing area", found)


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants in a tree: prose, not SQL."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def sql_in(module: Module) -> list[str]:
    tree = ast.parse(module.source)
    prose = docstrings(tree)
    return sorted({
        f"{module.path}:{node.lineno} {keyword.strip()}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
        for keyword in SQL_KEYWORDS if keyword in node.value
    })


def test_services_hold_sql_only_in_their_stores() -> None:
    """A table's reads and writes live with its owner (projections/<area>/store.py and queries.py); a services
    area keeps SQL only for the tables that are its own, in its store.py; the local Postgres setup is exempt."""
    def exempt(m: Module) -> bool:
        return (len(m.path.parts) == 3 and m.path.name == "store.py") or m.within("services.devtools.stack")

    found = [v for m in modules() if m.within("services") and not exempt(m) for v in sql_in(m)]
    assert found == [], violations("SQL in services/ only in services/<area>/store.py", found)
