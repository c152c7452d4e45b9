#!/usr/bin/env python3
"""The crate's layering, checked (CI runs it from scripts/test.sh):

1. Only `src/filter/` may name proxy-wasm: everything else is the pure core, tested natively.
   The filter speaks the ABI directly (src/filter/abi.rs, host.rs), so "naming proxy-wasm" is an
   SDK path, a host import block, an exported symbol or an ABI function (`proxy_*(`).
2. The core's modules import each other without a cycle (`filter` may use any of them; none
   of them may use `filter`).

Exits 1 and names every violation."""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
GLUE = "filter"
PROXY_WASM = re.compile(r"\bproxy_wasm\b|\bhostcalls\b|\bwasm_import_module\b|\bno_mangle\b|\bproxy_[a-z0-9_]+\s*\(")
USES = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def main() -> int:
    problems = []
    graph: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        module = module_of(path)
        text = path.read_text()
        # Comments may mention anything; code may not.
        code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
        if module != GLUE:
            for n, line in enumerate(code.splitlines(), 1):
                if PROXY_WASM.search(line):
                    problems.append(f"{path.relative_to(SRC.parent)}:{n}: core code names proxy-wasm: {line.strip()}")
        if module in ("lib", "main"):
            continue
        for used in USES.findall(code):
            if used != module:
                graph.setdefault(module, set()).add(used)
    for module, used in sorted(graph.items()):
        if module != GLUE and GLUE in used:
            problems.append(f"src/{module}: the core uses the glue (crate::{GLUE})")
    # Cycles among core modules (depth-first search, reporting each cycle once).
    state: dict[str, int] = {}
    stack: list[str] = []
    seen_cycles = set()

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if n == GLUE:
                continue
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                key = frozenset(cycle)
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    problems.append("import cycle: " + " -> ".join(cycle))
            elif state.get(n) is None:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m != GLUE and state.get(m) is None:
            visit(m)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        core = sorted(m for m in graph if m != GLUE)
        print(f"layering ok: {len(core)} core modules, none names proxy-wasm, no import cycle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
