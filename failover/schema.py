"""``failover schema``: the JSON Schema of ``failover.yaml``, for editors.

It describes the file as written, before the loader's work: a duration may be ``30``
or ``"30s"``/``"10m"`` (what :func:`providers.base.parse_duration` reads), a number or a
flag may be a whole ``${ENV}`` reference (interpolated, then read as the number), and each
provider's own definitions (an ssh machine, say) are hoisted to the top, where their
``$ref``s point. ``tests/test_holes_cli.py`` validates ``failover init``'s output and the
README's examples against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from providers.base import parse_duration

DURATION = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"
ENV_REFERENCE = r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$"
# What pydantic leaves behind for a constraint on an optional value, in JSON Schema terms.
_BOUNDS = {"gt": "exclusiveMinimum", "ge": "minimum", "lt": "exclusiveMaximum", "le": "maximum"}


def _or_env(schema: JsonSchemaValue) -> JsonSchemaValue:
    return {"anyOf": [schema, {"type": "string", "pattern": ENV_REFERENCE}]}


class FileSchema(GenerateJsonSchema):
    """Pydantic's generator, taught what the loader accepts besides the models' types."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        inner = super().function_before_schema(schema)
        if schema["function"].get("function") is parse_duration:
            text = {"type": "string", "pattern": DURATION, "examples": ["500ms", "30s", "10m"]}
            return {"anyOf": [inner, text, {"type": "string", "pattern": ENV_REFERENCE}]}
        return inner

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return _or_env(super().int_schema(schema))

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return _or_env(super().bool_schema(schema))


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(schema_generator=FileSchema)


def _bounds(node: Any) -> None:
    if isinstance(node, dict):
        for short, full in _BOUNDS.items():
            if short in node and ("type" in node or "anyOf" in node) and full not in node:
                node[full] = node.pop(short)
        for value in node.values():
            _bounds(value)
    elif isinstance(node, list):
        for value in node:
            _bounds(value)


def hoisted(variants: list[dict[str, Any]], defs: dict[str, Any]) -> dict[str, Any]:
    """``anyOf`` the variants, their own ``$defs`` moved into ``defs`` (the root's)."""
    for variant in variants:
        defs.update(variant.pop("$defs", {}))
    return {"anyOf": variants} if variants else {"type": "object"}


def file_schema(
    config: type[BaseModel],
    providers: Sequence[type[BaseModel]],
    dns: Sequence[type[BaseModel]],
) -> dict[str, Any]:
    """The whole file's schema: ``config``'s, with each provider and DNS type spelled out."""
    schema = model_schema(config)
    props = schema["properties"]
    for key in ("path", "state_dir"):
        props.pop(key, None)
    defs = schema.setdefault("$defs", {})
    props["providers"]["items"] = hoisted([model_schema(m) for m in providers], defs)
    one = hoisted([model_schema(m) for m in dns], defs)
    # One backend, or a list of named ones (several DNS companies, CONTRACT section 12).
    props["dns"] = {"anyOf": [one, {"type": "array", "items": one, "minItems": 1}]}
    schema["title"] = "failover.yaml"
    _bounds(schema)
    return schema
