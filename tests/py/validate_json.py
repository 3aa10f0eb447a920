"""Validates generated texts against their JSON Schemas with the `jsonschema` package (PyPI,
installed by scripts/test.sh). Reads [{"schema": ..., "text": ...}, ...] on stdin; prints
{"checked": N, "failures": [{"index", "text", "error"}]}."""
import json
import sys

import jsonschema

cases = json.load(sys.stdin)
failures = []
for i, c in enumerate(cases):
    try:
        value = json.loads(c["text"])
    except ValueError as e:
        failures.append({"index": i, "text": c["text"], "error": f"not JSON: {e}"})
        continue
    try:
        jsonschema.validate(value, c["schema"], cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError as e:
        failures.append({"index": i, "text": c["text"], "error": e.message})
print(json.dumps({"checked": len(cases), "failures": failures}))
