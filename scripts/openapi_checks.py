#!/usr/bin/env python3
"""Checks of openapi/openapi.yaml beyond "the router serves what it documents" (that is
services/api-gateway/tests/openapi_routes.rs). Run by scripts/check-openapi.sh inside its venv, which has
openapi-spec-validator, jsonschema and PyYAML.

    python3 scripts/openapi_checks.py [SPEC] [TMI-REFERENCE-JSON]

Prints PASS/FAIL/SKIP per check (with what failed), then `openapi checks: N passed, M failed[, K skipped]`.
Exit status 0 when nothing failed.
"""

import json
import os
import sys

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import OpenAPIV31SpecValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "openapi", "openapi.yaml")
# TMI's document, when this checkout sits next to the shared reference material (optional).
REFERENCE = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
    os.path.dirname(ROOT), "shared", "reference", "tmi-webhooks-openapi.json")

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# TMI's operations that Hookline serves: every other operation is a Hookline addition and must say so.
TMI_OPERATIONS = {
    ("get", "/admin/webhooks/subscriptions"), ("post", "/admin/webhooks/subscriptions"),
    ("get", "/admin/webhooks/subscriptions/{webhook_id}"), ("delete", "/admin/webhooks/subscriptions/{webhook_id}"),
    ("post", "/admin/webhooks/subscriptions/{webhook_id}/test"),
    ("get", "/admin/webhooks/deliveries"), ("get", "/admin/webhooks/deliveries/{delivery_id}"),
    ("post", "/addons"), ("get", "/addons"), ("get", "/addons/{id}"), ("delete", "/addons/{id}"),
    ("post", "/addons/{id}/invoke"),
    ("get", "/webhook-deliveries/{delivery_id}"), ("post", "/webhook-deliveries/{delivery_id}/status"),
    ("get", "/admin/quotas/webhooks"), ("get", "/admin/quotas/webhooks/{user_id}"),
    ("put", "/admin/quotas/webhooks/{user_id}"), ("delete", "/admin/quotas/webhooks/{user_id}"),
    ("get", "/admin/quotas/addons"), ("get", "/admin/quotas/addons/{user_id}"),
    ("put", "/admin/quotas/addons/{user_id}"), ("delete", "/admin/quotas/addons/{user_id}"),
}
# TMI paths Hookline does not serve (none since the admin quotas, issue #6).
TMI_NOT_YET = set()
# Query parameters Hookline adds to TMI's operations.
# The timestamped receiver headers (issue #17) on the two receiver operations.
RECEIVER_TIMESTAMP_HEADERS = {"X-Webhook-Timestamp", "webhook-id", "webhook-timestamp", "webhook-signature"}
ADDED_PARAMETERS = {("get", "/admin/webhooks/deliveries"): {"status", "event_type", "addon_id", "created_after",
                                                           "created_before"},
                    ("get", "/webhook-deliveries/{delivery_id}"): RECEIVER_TIMESTAMP_HEADERS,
                    ("post", "/webhook-deliveries/{delivery_id}/status"): RECEIVER_TIMESTAMP_HEADERS}
# Response headers some statuses must document (the gateway always sends them there).
REQUIRED_HEADERS = {"401": "WWW-Authenticate", "405": "Allow", "503": "Retry-After"}

SPEC_URI = "urn:hookline:openapi"


class Checks:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def run(self, name, fn):
        try:
            problems = fn()
        except Exception as e:  # a crashing check is a failing check, with its reason
            problems = [f"{type(e).__name__}: {e}"]
        if problems is None:
            self.skipped += 1
            print(f"SKIP {name}")
        elif problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems[:50]:
                print(f"    {p}")
            if len(problems) > 50:
                print(f"    … and {len(problems) - 50} more")
        else:
            self.passed += 1
            print(f"PASS {name}")


def load_text():
    with open(SPEC, encoding="utf-8") as f:
        return f.read()


TEXT = load_text()
DOC = yaml.safe_load(TEXT)


def resolve(node):
    """Follows a local `$ref` (components only)."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"non-local $ref {ref}"
        node = DOC
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        seen += 1
        assert seen < 20, f"$ref loop at {ref}"
    return node


def operations():
    for path, item in DOC.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield method, path, item, item[method]


def walk(node, pointer=""):
    yield pointer, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{pointer}/{k.replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{pointer}/{i}")


# ---- checks ----------------------------------------------------------------------------------------------------

def spec_validator():
    """openapi-spec-validator: the OpenAPI 3.1 meta-schema, JSON Schema 2020-12 schemas, every $ref."""
    return [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}"
            for e in OpenAPIV31SpecValidator(DOC).iter_errors()]


def plain_json_data():
    """The YAML holds only JSON data (no dates, no non-string keys, no anchors), so the gateway's YAML reader
    (serde_norway, YAML 1.2) and PyYAML (YAML 1.1) read the same document."""
    problems = []
    for event in yaml.parse(TEXT):
        if getattr(event, "anchor", None):
            problems.append(f"anchor &{event.anchor} (line {event.start_mark.line + 1}): write it out")
    for pointer, node in walk(DOC):
        if isinstance(node, dict):
            problems += [f"{pointer}: key {k!r} is not a string" for k in node if not isinstance(k, str)]
        elif not isinstance(node, (list, str, int, float, bool, type(None))):
            problems.append(f"{pointer}: {type(node).__name__} value {node!r} (quote it)")
    return problems


def openapi_3_1_only():
    """OpenAPI 3.1 without 3.0 leftovers: no `nullable` (type arrays instead), no schema-level `example`."""
    problems = []
    if not str(DOC.get("openapi", "")).startswith("3.1."):
        problems.append(f"openapi is {DOC.get('openapi')!r}, expected 3.1.x")
    for pointer, node in walk(DOC):
        if isinstance(node, dict) and "nullable" in node:
            problems.append(f"{pointer}: nullable")
        in_schema = pointer.startswith("/components/schemas/") or pointer.endswith("/schema") \
            or "/schema/" in pointer
        if in_schema and isinstance(node, dict) and "example" in node:
            problems.append(f"{pointer}: schema `example` (use `examples: [...]`)")
    return problems


def operation_basics():
    """Every operation: unique operationId, summary, description, tags, a 2xx answer, explicit security."""
    problems, ids = [], {}
    for method, path, _, op in operations():
        where = f"{method.upper()} {path}"
        for key in ("operationId", "summary", "description", "tags", "security"):
            if key not in op:
                problems.append(f"{where}: no {key}")
        oid = op.get("operationId")
        if oid in ids:
            problems.append(f"{where}: operationId {oid} also used by {ids[oid]}")
        ids[oid] = where
        # A success, or a redirect for an address that only forwards (`/console` → `/console/`).
        if not any(str(code)[0] in "23" for code in op.get("responses", {})):
            problems.append(f"{where}: no 2xx (or 3xx) response")
    return problems


def errors_use_error_schema():
    """Every 4xx/5xx response is a JSON `Error` body, and always-sent headers are documented
    (401 WWW-Authenticate, 405 Allow, 503 Retry-After; 429 Retry-After)."""
    problems = []
    for method, path, _, op in operations():
        for code, response in op.get("responses", {}).items():
            code = str(code)
            if code[0] not in "45":
                continue
            where = f"{method.upper()} {path} {code}"
            r = resolve(response)
            content = r.get("content", {})
            if list(content) != ["application/json"]:
                problems.append(f"{where}: content {list(content)}, expected only application/json")
            elif content["application/json"].get("schema") != {"$ref": "#/components/schemas/Error"}:
                problems.append(f"{where}: schema is not #/components/schemas/Error")
            want = REQUIRED_HEADERS.get(code)
            if want and want not in r.get("headers", {}):
                problems.append(f"{where}: no {want} header")
            if code == "429" and "Retry-After" not in r.get("headers", {}):
                problems.append(f"{where}: no Retry-After header")
    return problems


def security_schemes():
    """Both schemes (bearerAuth JWT, hmacSignature in X-Webhook-Signature); operations that need
    credentials document 401, public ones do not."""
    problems = []
    schemes = DOC.get("components", {}).get("securitySchemes", {})
    bearer, hmac = schemes.get("bearerAuth", {}), schemes.get("hmacSignature", {})
    if (bearer.get("type"), bearer.get("scheme"), bearer.get("bearerFormat")) != ("http", "bearer", "JWT"):
        problems.append(f"bearerAuth is {bearer}")
    if (hmac.get("type"), hmac.get("in"), hmac.get("name")) != ("apiKey", "header", "X-Webhook-Signature"):
        problems.append(f"hmacSignature is {hmac}")
    for method, path, _, op in operations():
        security = op.get("security", DOC.get("security", []))
        for requirement in security:
            problems += [f"{method.upper()} {path}: unknown scheme {s}" for s in requirement if s not in schemes]
        has_401 = "401" in op.get("responses", {})
        if bool(security) != has_401:
            problems.append(f"{method.upper()} {path}: security {security} but 401 documented: {has_401}")
    return problems


def hookline_additions():
    """Operations and parameters that TMI does not have carry `x-hookline-addition: true` and a description;
    TMI's own do not."""
    problems = []
    for method, path, _, op in operations():
        where = f"{method.upper()} {path}"
        addition = op.get("x-hookline-addition") is True
        if (method, path) in TMI_OPERATIONS and addition:
            problems.append(f"{where}: TMI's operation marked as a Hookline addition")
        if (method, path) not in TMI_OPERATIONS and not addition:
            problems.append(f"{where}: not TMI's, but no x-hookline-addition: true")
        if addition and "Hookline addition" not in op.get("description", ""):
            problems.append(f"{where}: a Hookline addition whose description does not say so")
        for p in map(resolve, op.get("parameters", [])):
            added = p.get("x-hookline-addition") is True
            expected = p["name"] in ADDED_PARAMETERS.get((method, path), set())
            if added != expected:
                problems.append(f"{where}: parameter {p['name']} x-hookline-addition is {added}, expected {expected}")
            if added and not p.get("description"):
                problems.append(f"{where}: added parameter {p['name']} has no description")
    missing = {(m, p) for m, p in TMI_OPERATIONS} - {(m, p) for m, p, _, _ in operations()}
    problems += [f"{m.upper()} {p}: TMI's operation is not documented" for m, p in sorted(missing)]
    return problems


def matches_tmi_reference():
    """TMI's reference lists the same operations (bar the quota endpoints Hookline does not serve yet)."""
    if not os.path.exists(REFERENCE):
        return None
    with open(REFERENCE, encoding="utf-8") as f:
        ref = json.load(f)
    theirs = {(m, p) for p, item in ref["paths"].items() if p not in TMI_NOT_YET for m in item if m in METHODS}
    problems = [f"{m.upper()} {p}: in TMI's document, not in TMI_OPERATIONS" for m, p in sorted(theirs - TMI_OPERATIONS)]
    problems += [f"{m.upper()} {p}: in TMI_OPERATIONS, not in TMI's document" for m, p in sorted(TMI_OPERATIONS - theirs)]
    return problems


def examples_match_schemas():
    """Every example (schema `examples`, media `example`/`examples`, parameter examples) validates against its
    schema, formats (uuid, date-time) included."""
    registry = Registry().with_resource(SPEC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
    problems, count = [], 0

    def check(schema_pointer, value, where):
        nonlocal count
        count += 1
        validator = Draft202012Validator({"$ref": f"{SPEC_URI}#{schema_pointer}"}, registry=registry,
                                         format_checker=FormatChecker())
        for e in validator.iter_errors(value):
            problems.append(f"{where}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:200]}")

    for pointer, node in walk(DOC):
        if not isinstance(node, dict):
            continue
        # A schema with `examples` (a list): inside components/schemas or an inline schema.
        if isinstance(node.get("examples"), list) and ("/schemas/" in pointer or pointer.endswith("/schema")
                                                        or "/properties/" in pointer):
            for i, ex in enumerate(node["examples"]):
                check(pointer, ex, f"{pointer}/examples/{i}")
        # A media type or parameter: `schema` next to `example` / `examples` (a map of Example objects).
        if "schema" in node and ("example" in node or isinstance(node.get("examples"), dict)):
            if "example" in node:
                check(f"{pointer}/schema", node["example"], f"{pointer}/example")
            for name, ex in node.get("examples", {}).items():
                ex = resolve(ex)
                if "value" in ex:
                    check(f"{pointer}/schema", ex["value"], f"{pointer}/examples/{name}")
    if count < 30:
        problems.append(f"only {count} examples found: the walk missed some")
    return problems


def components_used():
    """Every component is referenced (no dead definitions)."""
    refs = {n["$ref"] for _, n in walk(DOC) if isinstance(n, dict) and isinstance(n.get("$ref"), str)}
    problems = []
    for kind in ("schemas", "parameters", "responses"):
        for name in DOC.get("components", {}).get(kind, {}):
            if f"#/components/{kind}/{name}" not in refs:
                problems.append(f"components/{kind}/{name} is never referenced")
    return problems


def main():
    checks = Checks()
    checks.run("openapi-spec-validator (OpenAPI 3.1)", spec_validator)
    checks.run("YAML is plain JSON data", plain_json_data)
    checks.run("OpenAPI 3.1 only (no nullable, no schema example)", openapi_3_1_only)
    checks.run("operations: ids, summaries, descriptions, tags, 2xx, security", operation_basics)
    checks.run("4xx/5xx: Error body and required headers", errors_use_error_schema)
    checks.run("security schemes: bearerAuth and hmacSignature; 401 iff secured", security_schemes)
    checks.run("Hookline additions marked, TMI's operations present", hookline_additions)
    checks.run("TMI operations match TMI's reference document", matches_tmi_reference)
    checks.run("examples validate against their schemas", examples_match_schemas)
    checks.run("every component is referenced", components_used)
    summary = f"openapi checks: {checks.passed} passed, {checks.failed} failed"
    if checks.skipped:
        summary += f", {checks.skipped} skipped"
    print(summary)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
