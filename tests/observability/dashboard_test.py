#!/usr/bin/python3
"""The Grafana dashboard of the observability profile stays true to what Courier exports.

Usage: dashboard_test.py DASHBOARD_JSON OPERATIONS_MD PROMTOOL

Fails when the JSON is not a dashboard (panels with unique ids and a query each), when a query is
not valid PromQL (every expression goes through `promtool check rules` as a recording rule), or
when a query names a courier_* metric that docs/operations.md does not list (a renamed or removed
series would leave a panel silently empty).
"""
import json
import re
import subprocess
import sys
import tempfile


def main() -> int:
    dashboard_path, operations_path, promtool = sys.argv[1:4]
    with open(dashboard_path, encoding="utf-8") as f:
        dashboard = json.load(f)
    with open(operations_path, encoding="utf-8") as f:
        documented = f.read()
    problems = []
    panels = dashboard.get("panels", [])
    if not panels:
        problems.append("no panels")
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids):
        problems.append(f"panel ids repeat: {ids}")
    exprs = []
    for panel in panels:
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"panel {panel.get('title')!r} has no query")
        for t in targets:
            expr = t.get("expr", "")
            if not expr:
                problems.append(f"panel {panel.get('title')!r}: a target without expr")
                continue
            exprs.append(expr)
            for name in set(re.findall(r"\bcourier_[a-z0-9_]+", expr)):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                if f"`{name}" not in documented and f"`{base}" not in documented:
                    problems.append(f"{name} (panel {panel.get('title')!r}) is not in {operations_path}")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as rules:
        rules.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, expr in enumerate(exprs):
            rules.write(f"      - record: dashboard:query{i}\n        expr: {json.dumps(expr)}\n")
    check = subprocess.run([promtool, "check", "rules", rules.name], capture_output=True, text=True)
    if check.returncode != 0:
        problems.append("promtool: " + check.stdout + check.stderr)
    for p in problems:
        print("dashboard:", p)
    print(f"dashboard: {len(panels)} panels, {len(exprs)} queries, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
