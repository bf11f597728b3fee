#!/usr/bin/env python3
"""How thin the gRPC handlers are and where transactions are opened.

Run from the repository root: `python3 scripts/layout-metrics.py [SRC]`.
Counts, over every handler file (`src/grpc/*.rs` in the old layout,
`src/*/grpc.rs` in the capability layout):
- handlers (async fns of a `impl ...Service for ...` block), the longest,
  and how many are over 30 lines;
- transactions opened in handler files (`.write(`, `.read(`, `.command(`
  on a store or state) and audit/envelope writes there;
- audit/envelope writes in repo files (which should have none);
- scoping idioms (distinct helpers plus inline `Role::` checks) and
  hand-typed RPC paths (`"XService/Method"` literals).
"""
import glob
import re
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "src"
handler_files = sorted(set(glob.glob(f"{src}/grpc/*.rs") + glob.glob(f"{src}/*/grpc.rs")))
repo_files = sorted(set(glob.glob(f"{src}/store/*.rs") + glob.glob(f"{src}/*/repo.rs")))


def handlers(text):
    """(name, lines) of each async fn in a `impl ... for ...` block."""
    out = []
    lines = text.split("\n")
    in_impl = False
    i = 0
    while i < len(lines):
        ln = lines[i]
        if re.match(r"^impl\b.*\bfor\b", ln):
            in_impl = True
        elif ln.startswith("}"):
            in_impl = False
        m = re.match(r"^    async fn (\w+)", ln)
        if in_impl and m:
            j = i
            while j < len(lines) and lines[j] != "    }":
                j += 1
            out.append((m.group(1), j - i + 1))
            i = j
        i += 1
    return out


all_handlers = []
tx = audit_in_handlers = inline_roles = paths = 0
scopers = set()
for f in handler_files:
    t = open(f).read()
    all_handlers += [(f, n, c) for n, c in handlers(t)]
    tx += len(re.findall(r"\.(?:write|read|command)\(\s*\"", t))
    audit_in_handlers += len(re.findall(r"audit(?:::repo)?::append\(|inbox(?:::repo)?::enqueue\(", t))
    inline_roles += len(re.findall(r"\brole\s*[=!]=\s*Role::", t))
    paths += len(re.findall(r"\"[A-Za-z]+Service/[A-Za-z]+\"", t))
    scopers |= set(re.findall(r"\b(scope|scope_tenant|require_tenant|visible_tenant|tenant_scope|visible)\(", t))
audit_in_repos = sum(
    len(re.findall(r"audit(?:::repo)?::append\(|inbox(?:::repo)?::enqueue\(", open(f).read())) for f in repo_files
)
longest = max(all_handlers, key=lambda h: h[2]) if all_handlers else ("-", "-", 0)
print(f"handler files                        {len(handler_files)}")
print(f"handlers                             {len(all_handlers)}")
print(f"longest handler                      {longest[2]} lines ({longest[0]}::{longest[1]})")
print(f"handlers over 30 lines               {sum(1 for h in all_handlers if h[2] > 30)}")
print(f"transactions opened in handlers      {tx}")
print(f"audit/envelope writes in handlers    {audit_in_handlers}")
print(f"audit/envelope writes in repos       {audit_in_repos}")
print(f"scoping helpers used in handlers     {len(scopers)} ({', '.join(sorted(scopers))})")
print(f"inline role checks in handlers       {inline_roles}")
print(f"hand-typed RPC paths in handlers     {paths}")
