"""The codebase reads like its architecture: dependencies run one way (no import cycle among the project's
modules, imports inside functions included), `core/` never imports Streamlit or the dashboard, no block of six or
more lines is copied between two places, and every path the README and docs/ name exists in the repository."""
from __future__ import annotations

import ast
import hashlib
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "charts", "views", "benchmarks", "tools")
TOP_MODULES = ("app", "resources")


def _modules() -> dict[str, Path]:
    found = {m: ROOT / f"{m}.py" for m in TOP_MODULES}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its file (a submodule when one exists by that name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_no_import_cycle_among_the_projects_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_core_never_imports_streamlit_or_the_dashboard():
    modules = _modules()
    for name, path in modules.items():
        if not name.startswith("core"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for imported in names:
                root = imported.split(".")[0]
                assert root not in ("streamlit", "views", "charts", "resources", "app"), f"{name} imports {imported}"


# --- copied code ---------------------------------------------------------------------------------------------------
WINDOW = 6
SOURCE_SUFFIXES = (".py",)
SKIP = ("core/migrations/",)  # an Alembic revision is a frozen copy of the schema on purpose


def _logical_lines(path: Path) -> list[tuple[int, str]]:
    """Code lines with white space folded; blank lines, comments, lone punctuation and imports left out."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = " ".join(line.split())
        if (not text or text.startswith("#") or re.fullmatch(r"[\[\](){},:;]+", text)
                or text.startswith(("import ", "from ")) or text in ('"""', "'''")):
            continue
        out.append((number, text))
    return out


def test_no_block_of_six_or_more_lines_is_copied_between_two_places():
    files = [p for p in ROOT.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()
             and not any(part.startswith(".") or part in ("__pycache__",) for part in p.relative_to(ROOT).parts)
             and not str(p.relative_to(ROOT)).startswith(SKIP)]
    seen: dict[str, tuple[str, int]] = {}
    copies = defaultdict(set)
    for path in sorted(files):
        lines = _logical_lines(path)
        rel = str(path.relative_to(ROOT))
        last_copy = -1
        for i in range(len(lines) - WINDOW + 1):
            chunk = "\n".join(text for _, text in lines[i:i + WINDOW])
            key = hashlib.sha1(chunk.encode()).hexdigest()
            here = (rel, lines[i][0])
            if key in seen and seen[key] != here and not (seen[key][0] == rel and abs(seen[key][1] - here[1]) < WINDOW):
                if i > last_copy:  # report a run of copied lines once
                    copies[(seen[key][0], rel)].add((seen[key][1], here[1]))
                last_copy = i + WINDOW - 1
            else:
                seen.setdefault(key, here)
    assert not copies, "copied blocks (first line of each side): " + "; ".join(
        f"{a}:{sorted(v)[0][0]} ~ {b}:{sorted(v)[0][1]}" for (a, b), v in sorted(copies.items()))


# --- links and paths ----------------------------------------------------------------------------------------------
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE_PATH = re.compile(r"`((?:core|views|charts|tests|benchmarks|docs|tools|\.ci|\.streamlit)/[\w./-]*|"
                       r"(?:app|resources)\.py|requirements(?:-dev)?\.txt|Makefile)`")


def test_every_link_and_path_in_the_readme_and_docs_resolves_inside_the_repository():
    documents = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for doc in documents:
        if not doc.exists():
            missing.append(f"{doc.relative_to(ROOT)} itself")
            continue
        text = doc.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).resolve().exists():
                missing.append(f"{doc.relative_to(ROOT)} links {target}")
        for target in CODE_PATH.findall(text):
            base = target.split("<")[0].rstrip("/")
            if "*" in base or not base:
                continue
            if not (ROOT / base).exists():
                missing.append(f"{doc.relative_to(ROOT)} names {target}")
        assert "../shared" not in text and "DOMAIN.md" not in text, f"{doc.name} points outside the repository"
    assert not missing, "; ".join(missing)


def test_nothing_in_the_repository_points_at_documents_it_does_not_contain():
    offenders = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if not path.is_file() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if path.suffix not in (".py", ".json", ".md", ".toml", ".txt", ".csv") or rel.name == "test_structure.py":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"\.\./shared|DOMAIN\.md|DATA_CONTRACT\.md|DESIGN\.md|shared/checks", text):
            offenders.append(str(rel))
    assert not offenders, "files pointing outside the repository: " + ", ".join(sorted(offenders))
