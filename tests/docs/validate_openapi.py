#!/usr/bin/env python3
"""Validates docs/openapi.yaml: against the OpenAPI 3.0 JSON schema that Debian's
openapi-specification package ships (with python3-jsonschema), then what that schema cannot see:
every internal $ref resolves, operationIds are unique, and each path template's parameters are
declared. Usage: validate_openapi.py OPENAPI_YAML OAS_3_0_SCHEMA_JSON"""
import json
import re
import sys

import jsonschema
import yaml


def refs(node, where="#"):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield where, value
            else:
                yield from refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from refs(value, f"{where}/{i}")


def resolve(doc, ref):
    if not ref.startswith("#/"):
        raise KeyError(f"{ref}: only references inside the document are expected")
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[part]
    return node


def main():
    spec_path, schema_path = sys.argv[1], sys.argv[2]
    with open(spec_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    problems = []

    validator = jsonschema.Draft4Validator(schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.absolute_path)
        problems.append(f"schema: at /{where}: {error.message[:300]}")

    for where, ref in refs(doc):
        try:
            resolve(doc, ref)
        except (KeyError, TypeError) as e:
            problems.append(f"{where}: unresolved $ref {ref} ({e})")

    seen = {}
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    for path, item in (doc.get("paths") or {}).items():
        templated = set(re.findall(r"\{([^}]+)\}", path))

        def declared(params):
            out = set()
            for p in params or []:
                if "$ref" in p:
                    p = resolve(doc, p["$ref"])
                if p.get("in") == "path":
                    out.add(p["name"])
            return out

        common = declared(item.get("parameters"))
        for method, op in item.items():
            if method not in methods:
                continue
            op_id = op.get("operationId")
            if op_id in seen:
                problems.append(f"operationId {op_id} used by {seen[op_id]} and {path} {method}")
            seen[op_id] = f"{path} {method}"
            names = common | declared(op.get("parameters"))
            if names != templated:
                problems.append(f"{path} {method}: path parameters {sorted(names)}, "
                                f"template has {sorted(templated)}")

    for p in problems:
        print(p)
    if problems:
        print(f"{spec_path}: {len(problems)} problem(s)")
        return 1
    print(f"{spec_path}: valid OpenAPI {doc.get('openapi')}, {len(doc['paths'])} paths, "
          f"{len(seen)} operations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
