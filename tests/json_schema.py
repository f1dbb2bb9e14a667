"""A small JSON Schema validator for docs/protocol.schema.json: the keywords that file uses (type,
const, enum, required, properties, additionalProperties: false, minimum, maximum, minLength,
maxLength, pattern, items). A keyword it does not know is an error, so the schema cannot use
one that no test checks."""
from __future__ import annotations

import json
import re
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "protocol.schema.json"
KEYWORDS = {"description", "type", "const", "enum", "required", "properties", "additionalProperties",
            "minimum", "maximum", "minLength", "maxLength", "pattern", "items"}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def definitions() -> dict[str, dict]:
    return json.loads(SCHEMA.read_text())["$defs"]


def errors(value: object, schema: dict, where: str = "$") -> list[str]:
    """What is wrong with `value` against `schema`: [] when it is valid."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        raise ValueError(f"{where}: keywords this validator does not check: {sorted(unknown)}")
    found: list[str] = []
    if "type" in schema and not TYPES[schema["type"]](value):
        return [f"{where}: expected {schema['type']}, got {json.dumps(value)}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        found.append(f"{where}: expected {json.dumps(schema['const'])}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: expected one of {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            found.append(f"{where}: above {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            found.append(f"{where}: length {len(value)} out of range")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{where}: does not match {schema['pattern']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += errors(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        found += [f"{where}: missing {key!r}" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                found += errors(item, properties[key], f"{where}.{key}")
            elif schema.get("additionalProperties", True) is False:
                found.append(f"{where}: unexpected {key!r}")
    return found


def check(value: object, name: str) -> None:
    """Asserts that `value` is a valid `name` message of the protocol."""
    problems = errors(value, definitions()[name])
    assert not problems, f"{name}: " + "; ".join(problems)
