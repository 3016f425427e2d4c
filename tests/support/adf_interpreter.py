"""A small interpreter for the Azure Data Factory control-flow subset our pipeline templates use.

It executes ADF pipeline JSON (`{name, properties: {activities, parameters, variables}}`) the way the
ADF service does, for these parts only:

- activities: WebActivity (real HTTP; MSI auth asks `token_provider(resource)` for a bearer token),
  Until, Wait, IfCondition, Fail, SetVariable, Filter; `dependsOn` with Succeeded / Failed / Completed /
  Skipped; an activity's `policy.retry` and `retryIntervalInSeconds`;
- the pipeline outcome rule: every leaf activity is evaluated (a skipped leaf is replaced by the
  activities it depends on); the run succeeds only if all evaluated activities succeeded; its error is
  the failing activity's (a Fail activity's message and errorCode);
- expressions: `@expr` values, `{"value": ..., "type": "Expression"}` objects and `@{...}` string
  interpolation; `pipeline()`, `activity('X')`, `variables('x')`, `item()`; `.name`, `?.name`,
  `[index]`; and the functions in `FUNCTIONS`. Anything else is an `AdfExpressionError` naming it,
  so a template never silently relies on something this interpreter does not model.

Before it runs anything, a pipeline is checked against Data Factory's REST spec (`adf_spec`): an
activity type or property the spec does not define is an `AdfSpecError` listing each one (ADF would
refuse it or silently ignore it; a template must rely on neither).

Time is scaled (`time_scale`): a Wait of 30 s or a retry interval of 30 s takes 30 * time_scale s.
Not modelled: parallel branches (activities run one at a time in dependency order), linked services,
datasets, and every activity type not listed above (the spec defines them; running one fails it).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.support.adf_spec import check_pipeline

MAX_WEB_RESPONSE = 4 * 1024 * 1024  # ADF: a Web activity response is at most 4 MB
WEB_RESPONSE_TIMEOUT = 60.0  # ADF: a Web activity waits one minute for the response
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


class AdfExpressionError(Exception):
    """An expression that ADF would reject, or that uses something outside the supported subset."""


class ActivityFailed(Exception):
    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


# ---- expressions ---------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>\?\.|\?\[|[().,\[\]]))"
)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise AdfExpressionError(f"cannot parse expression at {text[pos : pos + 30]!r} in {text!r}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind or "")
        if kind == "string":
            tokens.append(("string", value[1:-1].replace("''", "'")))
        elif kind == "number":
            tokens.append(("number", float(value) if "." in value else int(value)))
        elif kind == "name":
            tokens.append(("name", value))
        else:
            tokens.append(("punct", value))
    return tokens


@dataclass
class _Call:
    name: str
    args: list[Any]


@dataclass
class _Access:
    target: Any
    key: Any  # a node
    safe: bool


@dataclass
class _Literal:
    value: Any


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str, value: Any = None) -> Any:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise AdfExpressionError(
                f"expected {value or kind} at token {self.pos} of {self.text!r}, found {token}"
            )
        self.pos += 1
        return token[1]

    def parse(self) -> Any:
        node = self.expr()
        if self.peek() is not None:
            raise AdfExpressionError(f"unexpected {self.peek()} in {self.text!r}")
        return node

    def expr(self) -> Any:
        token = self.peek()
        if token is None:
            raise AdfExpressionError(f"expression ends too early: {self.text!r}")
        kind, value = token
        if kind in ("string", "number"):
            self.pos += 1
            node: Any = _Literal(value)
        elif kind == "name":
            self.pos += 1
            if value in ("true", "false", "null") and (self.peek() or ("", ""))[1] != "(":
                node = _Literal({"true": True, "false": False, "null": None}[value])
            else:
                self.take("punct", "(")
                args: list[Any] = []
                if self.peek() != ("punct", ")"):
                    args.append(self.expr())
                    while self.peek() == ("punct", ","):
                        self.pos += 1
                        args.append(self.expr())
                self.take("punct", ")")
                node = _Call(value, args)
        else:
            raise AdfExpressionError(f"unexpected {value!r} in {self.text!r}")
        while (
            (token := self.peek()) is not None and token[0] == "punct" and token[1] in (".", "?.", "[", "?[")
        ):
            self.pos += 1
            if token[1] in (".", "?."):
                node = _Access(node, _Literal(self.take("name")), safe=token[1] == "?.")
            else:
                key = self.expr()
                self.take("punct", "]")
                node = _Access(node, key, safe=token[1] == "?[")
        return node


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "bool", int: "int", float: "float"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _to_string(value: Any) -> str:
    """ADF's string(): strings as they are, booleans True/False, objects and arrays as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _need(name: str, args: Sequence[Any], count: int | tuple[int, int]) -> None:
    low, high = (count, count) if isinstance(count, int) else count
    if not low <= len(args) <= high:
        raise AdfExpressionError(f"{name}() takes {low}..{high} arguments, got {len(args)}")


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise AdfExpressionError(f"{name}() expects booleans, got {_type_name(value)} {value!r}")
    return value


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        raise AdfExpressionError(f"json() expects a string, got {_type_name(text)}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdfExpressionError(f"json(): not valid JSON ({exc}): {text[:200]!r}") from None


def _union(*collections: Any) -> Any:
    if all(isinstance(c, list) for c in collections):
        out: list[Any] = []
        for collection in collections:
            for item in collection:
                if item not in out:
                    out.append(item)
        return out
    if all(isinstance(c, dict) for c in collections):
        merged: dict[str, Any] = {}
        for collection in collections:
            merged.update(collection)
        return merged
    raise AdfExpressionError(f"union() expects arrays or objects, got {[_type_name(c) for c in collections]}")


def _equals(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, numbers) and isinstance(b, numbers):
        return a == b
    return type(a) is type(b) and a == b


def _substring(text: Any, start: Any, length: Any = None) -> str:
    if not isinstance(text, str):
        raise AdfExpressionError(f"substring() expects a string, got {_type_name(text)}")
    end = len(text) if length is None else start + length
    if start < 0 or end > len(text) or end < start:
        raise AdfExpressionError(
            f"substring(): start {start} / length {length} out of range for {len(text)} chars"
        )
    return text[start:end]


def _compare(name: str, a: Any, b: Any) -> tuple[Any, Any]:
    if (
        isinstance(a, bool)
        or isinstance(b, bool)
        or not (
            (isinstance(a, int | float) and isinstance(b, int | float))
            or (isinstance(a, str) and isinstance(b, str))
        )
    ):
        raise AdfExpressionError(
            f"{name}() compares two numbers or two strings, got {_type_name(a)}, {_type_name(b)}"
        )
    return a, b


def _length(value: Any) -> int:
    if not isinstance(value, str | list | dict):
        raise AdfExpressionError(f"length() expects a string or an array, got {_type_name(value)}")
    return len(value)


def _first(value: Any) -> Any:
    if isinstance(value, str | list):
        return value[0] if value else None
    raise AdfExpressionError(f"first() expects a string or an array, got {_type_name(value)}")


def _last(value: Any) -> Any:
    if isinstance(value, str | list):
        return value[-1] if value else None
    raise AdfExpressionError(f"last() expects a string or an array, got {_type_name(value)}")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AdfExpressionError(f"int(): cannot convert {value!r}") from None


def _numbers(name: str, *values: Any) -> tuple[Any, ...]:
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise AdfExpressionError(f"{name}() expects numbers, got {', '.join(_type_name(v) for v in values)}")
    return values


def _split(text: Any, separator: Any) -> list[str]:
    if not isinstance(text, str) or not isinstance(separator, str) or not separator:
        raise AdfExpressionError(
            f"split() expects two strings, got {_type_name(text)}, {_type_name(separator)}"
        )
    return text.split(separator)


# name -> (arity, implementation on evaluated arguments). `if`, `and`, `or`, `coalesce` are lazy (below).
FUNCTIONS: dict[str, tuple[int | tuple[int, int], Callable[..., Any]]] = {
    "equals": (2, lambda a, b: _equals(a, b)),
    "not": (1, lambda a: not _bool("not", a)),
    "less": (2, lambda a, b: (lambda x, y: x < y)(*_compare("less", a, b))),
    "greater": (2, lambda a, b: (lambda x, y: x > y)(*_compare("greater", a, b))),
    "contains": (2, lambda c, v: (v in c) if isinstance(c, str | list | dict) else _bad("contains", c)),
    "json": (1, _json),
    "string": (1, _to_string),
    "int": (1, _int),
    "concat": ((1, 99), lambda *parts: "".join(_to_string(p) for p in parts)),
    "createArray": ((1, 99), lambda *items: list(items)),
    "union": ((2, 99), _union),
    "first": (1, _first),
    "last": (1, _last),
    "length": (1, _length),
    "empty": (1, lambda v: v is None or (isinstance(v, str | list | dict) and len(v) == 0)),
    "substring": ((2, 3), _substring),
    "sub": (2, lambda a, b: a - b),
    "add": (2, lambda a, b: (lambda x, y: x + y)(*_numbers("add", a, b))),
    "mul": (2, lambda a, b: (lambda x, y: x * y)(*_numbers("mul", a, b))),
    "max": ((1, 99), lambda *values: max(_numbers("max", *values))),
    "split": (2, _split),
}
LAZY = ("if", "and", "or", "coalesce")


def _bad(name: str, value: Any) -> Any:
    raise AdfExpressionError(f"{name}() cannot be applied to {_type_name(value)}")


@dataclass
class Scope:
    """What expressions can see: pipeline info, activity outputs, variables, the current item()."""

    pipeline: dict[str, Any]
    activities: dict[str, dict[str, Any]]
    variables: dict[str, Any]
    item: Any = None
    has_item: bool = False


def evaluate_node(node: Any, scope: Scope) -> Any:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Access):
        target = evaluate_node(node.target, scope)
        key = evaluate_node(node.key, scope)
        if target is None:
            if node.safe:
                return None
            raise AdfExpressionError(f"cannot read {key!r} of null")
        if isinstance(target, dict):
            if key in target:
                return target[key]
            # ADF matches property names case-insensitively (a Filter's output shows "Value", its
            # documented use is `output.value`).
            folded = [k for k in target if isinstance(key, str) and k.lower() == key.lower()]
            if folded:
                return target[folded[0]]
            if node.safe:
                return None
            raise AdfExpressionError(f"property {key!r} does not exist; available: {sorted(target)}")
        if isinstance(target, list) and isinstance(key, int) and not isinstance(key, bool):
            if 0 <= key < len(target):
                return target[key]
            if node.safe:
                return None
            raise AdfExpressionError(f"index {key} out of range for an array of {len(target)}")
        raise AdfExpressionError(f"cannot read {key!r} of {_type_name(target)}")
    assert isinstance(node, _Call)
    name, args = node.name, node.args
    if name == "pipeline":
        _need(name, args, 0)
        return scope.pipeline
    if name == "activity":
        _need(name, args, 1)
        activity = evaluate_node(args[0], scope)
        if activity not in scope.activities:
            raise AdfExpressionError(f"activity({activity!r}) has not run (yet)")
        return scope.activities[activity]
    if name == "variables":
        _need(name, args, 1)
        variable = evaluate_node(args[0], scope)
        if variable not in scope.variables:
            raise AdfExpressionError(f"variables({variable!r}): no such pipeline variable")
        return scope.variables[variable]
    if name == "item":
        _need(name, args, 0)
        if not scope.has_item:
            raise AdfExpressionError("item() outside of an iteration (Filter/ForEach)")
        return scope.item
    if name == "if":
        _need(name, args, 3)
        return evaluate_node(args[1] if _bool("if", evaluate_node(args[0], scope)) else args[2], scope)
    if name in ("and", "or"):
        _need(name, args, 2)
        first = _bool(name, evaluate_node(args[0], scope))
        if first == (name == "or"):
            return first
        return _bool(name, evaluate_node(args[1], scope))
    if name == "coalesce":
        for arg in args:
            value = evaluate_node(arg, scope)
            if value is not None:
                return value
        return None
    if name not in FUNCTIONS:
        raise AdfExpressionError(
            f"function {name}() is not supported by this interpreter (supported: {sorted([*FUNCTIONS, *LAZY])})"
        )
    arity, implementation = FUNCTIONS[name]
    _need(name, args, arity)
    return implementation(*(evaluate_node(a, scope) for a in args))


def evaluate_expression(text: str, scope: Scope) -> Any:
    """Evaluate one expression (without its leading `@`)."""
    return evaluate_node(_Parser(text).parse(), scope)


def evaluate_template(text: str, scope: Scope) -> Any:
    """An ADF string value: `@expr` (any type), `@@...` (literal), or a string with `@{expr}` parts."""
    if text.startswith("@@"):
        return text[1:]
    if text.startswith("@") and not text.startswith("@{"):
        return evaluate_expression(text[1:], scope)
    if "@{" not in text:
        return text
    out: list[str] = []
    pos = 0
    while (start := text.find("@{", pos)) != -1:
        out.append(text[pos:start])
        end = _closing_brace(text, start + 2)
        out.append(_to_string(evaluate_expression(text[start + 2 : end], scope)))
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def _closing_brace(text: str, pos: int) -> int:
    in_string = False
    while pos < len(text):
        char = text[pos]
        if char == "'":
            in_string = not in_string
        elif char == "}" and not in_string:
            return pos
        pos += 1
    raise AdfExpressionError(f"unterminated @{{ in {text!r}")


def evaluate_value(value: Any, scope: Scope) -> Any:
    """A property value: Expression objects and @-strings are evaluated, other JSON is taken as is."""
    if isinstance(value, dict) and value.get("type") == "Expression" and set(value) == {"value", "type"}:
        return evaluate_template(value["value"], scope)
    if isinstance(value, str):
        return evaluate_template(value, scope)
    if isinstance(value, dict):
        return {k: evaluate_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate_value(v, scope) for v in value]
    return value


# ---- activities and pipelines --------------------------------------------------------------------
@dataclass
class ActivityRun:
    name: str
    type: str
    status: str  # Succeeded, Failed, Skipped
    attempts: int = 0
    output: Any = None
    error: dict[str, str] | None = None


@dataclass
class PipelineRun:
    run_id: str
    status: str  # Succeeded or Failed
    error: dict[str, str] | None
    activity_runs: list[ActivityRun]
    variables: dict[str, Any]

    def runs_of(self, name: str) -> list[ActivityRun]:
        return [r for r in self.activity_runs if r.name == name]


def _duration_seconds(text: Any) -> float:
    """ADF timespans: `d.hh:mm:ss` or `hh:mm:ss`."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", str(text))
    if not match:
        raise AdfExpressionError(f"not a d.hh:mm:ss timespan: {text!r}")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass
class Interpreter:
    """Runs pipelines. `token_provider(resource)` returns the bearer token a managed identity would get."""

    token_provider: Callable[[str], str] = lambda resource: "token"
    time_scale: float = 1.0
    factory: str = "test-factory"
    sleep: Callable[[float], None] = time.sleep
    requests: list[dict[str, Any]] = field(default_factory=list)  # every HTTP call made, for assertions

    def run(
        self,
        pipeline: Mapping[str, Any],
        parameters: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> PipelineRun:
        """Run `pipeline` to its end; AdfSpecError when Data Factory's spec does not allow it."""
        check_pipeline(pipeline)
        properties = pipeline["properties"]
        params = self._parameters(properties.get("parameters", {}), dict(parameters or {}))
        run_id = run_id or str(uuid.uuid4())
        scope = Scope(
            pipeline={
                "parameters": params,
                "RunId": run_id,
                "Pipeline": pipeline["name"],
                "DataFactory": self.factory,
                "TriggerType": "Manual",
            },
            activities={},
            variables={
                name: spec.get("defaultValue") for name, spec in properties.get("variables", {}).items()
            },
        )
        runs: list[ActivityRun] = []
        ok, error = self._run_graph(properties.get("activities", []), scope, runs)
        return PipelineRun(run_id, "Succeeded" if ok else "Failed", error, runs, scope.variables)

    @staticmethod
    def _parameters(specs: Mapping[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(specs))
        if unknown:
            raise ValueError(f"unknown pipeline parameters {unknown}; the pipeline has {sorted(specs)}")
        types = {
            "string": str,
            "securestring": str,
            "int": int,
            "float": float,
            "bool": bool,
            "array": list,
            "object": dict,
        }
        values: dict[str, Any] = {}
        for name, spec in specs.items():
            if name in given:
                value = given[name]
            elif "defaultValue" in spec:
                value = spec["defaultValue"]
            else:
                raise ValueError(f"pipeline parameter {name!r} is required (no default value)")
            expected = types[spec["type"].lower()]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise ValueError(
                    f"pipeline parameter {name!r}: expected {spec['type']}, got {_type_name(value)}"
                )
            values[name] = value
        return values

    # A graph is one activity list (the pipeline's, an Until's body, an If branch).
    def _run_graph(
        self, activities: Sequence[Mapping[str, Any]], scope: Scope, runs: list[ActivityRun]
    ) -> tuple[bool, dict[str, str] | None]:
        by_name = {a["name"]: a for a in activities}
        status: dict[str, str] = {}
        errors: dict[str, dict[str, str]] = {}
        pending = list(activities)
        while pending:
            ready = [a for a in pending if all(d["activity"] in status for d in a.get("dependsOn", []))]
            if not ready:
                raise ValueError(f"dependency cycle or unknown activity among {[a['name'] for a in pending]}")
            for activity in ready:
                pending.remove(activity)
                if all(
                    any(_condition_met(c, status[d["activity"]]) for c in d["dependencyConditions"])
                    for d in activity.get("dependsOn", [])
                ):
                    record = self._run_activity(activity, scope, runs)
                else:
                    record = ActivityRun(activity["name"], activity["type"], "Skipped")
                    runs.append(record)
                status[activity["name"]] = record.status
                if record.error:
                    errors[activity["name"]] = record.error
        # ADF's outcome rule: evaluate the leaves; a skipped leaf stands for the activities it depends on.
        dependents = {d["activity"] for a in activities for d in a.get("dependsOn", [])}
        to_check = [a["name"] for a in activities if a["name"] not in dependents]
        seen: set[str] = set()
        while to_check:
            name = to_check.pop(0)
            if name in seen:
                continue
            seen.add(name)
            if status[name] == "Failed":
                return False, errors.get(name)
            if status[name] == "Skipped":
                to_check.extend(d["activity"] for d in by_name[name].get("dependsOn", []))
        return True, None

    def _run_activity(
        self, activity: Mapping[str, Any], scope: Scope, runs: list[ActivityRun]
    ) -> ActivityRun:
        record = ActivityRun(activity["name"], activity["type"], "Failed")
        runs.append(record)
        policy = activity.get("policy", {})
        retries = int(policy.get("retry", 0))
        interval = float(policy.get("retryIntervalInSeconds", 30))
        while True:
            record.attempts += 1
            try:
                record.output = self._execute(activity, scope, runs)
                record.status, record.error = "Succeeded", None
                break
            except ActivityFailed as failure:
                record.error = {"message": failure.message, "errorCode": failure.error_code}
            except AdfExpressionError as exc:
                # ADF fails the activity (no retry helps: the expression is wrong).
                record.error = {
                    "message": f"expression error in {activity['name']}: {exc}",
                    "errorCode": "InvalidTemplate",
                }
                break
            if record.attempts > retries or activity["type"] == "Fail":
                break
            self.sleep(interval * self.time_scale)
        scope.activities[activity["name"]] = {"output": record.output, "error": record.error}
        return record

    def _execute(self, activity: Mapping[str, Any], scope: Scope, runs: list[ActivityRun]) -> Any:
        kind = activity["type"]
        props = activity.get("typeProperties", {})
        if kind == "WebActivity":
            return self._web(props, scope)
        if kind == "Wait":
            seconds = evaluate_value(props["waitTimeInSeconds"], scope)
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 1:
                raise ActivityFailed(
                    f"waitTimeInSeconds must be a positive integer, got {seconds!r}", "InvalidInput"
                )
            self.sleep(seconds * self.time_scale)
            return {}
        if kind == "SetVariable":
            name = props["variableName"]
            if name not in scope.variables:
                raise ActivityFailed(f"variable {name!r} is not declared by the pipeline", "InvalidVariable")
            scope.variables[name] = evaluate_value(props["value"], scope)
            return {"name": name, "value": scope.variables[name]}
        if kind == "Fail":
            message = evaluate_value(props["message"], scope)
            code = evaluate_value(props["errorCode"], scope)
            raise ActivityFailed(_to_string(message), _to_string(code))
        if kind == "IfCondition":
            condition = evaluate_value(props["expression"], scope)
            if not isinstance(condition, bool):
                raise AdfExpressionError(f"If Condition expression must be a boolean, got {condition!r}")
            branch = props.get("ifTrueActivities" if condition else "ifFalseActivities", [])
            ok, error = self._run_graph(branch, scope, runs)
            if not ok:
                assert error is not None
                raise ActivityFailed(error["message"], error["errorCode"])
            return {}
        if kind == "Until":
            timeout = _duration_seconds(evaluate_value(props.get("timeout", "7.00:00:00"), scope))
            deadline = time.monotonic() + timeout * self.time_scale
            while True:
                # ADF: a failed inner activity does not stop the loop; the expression decides. The
                # Until ends with the outcome of its last iteration.
                ok, error = self._run_graph(props["activities"], scope, runs)
                done = evaluate_value(props["expression"], scope)
                if not isinstance(done, bool):
                    raise AdfExpressionError(f"Until expression must be a boolean, got {done!r}")
                if done:
                    if not ok:
                        assert error is not None
                        raise ActivityFailed(error["message"], error["errorCode"])
                    return {}
                if time.monotonic() > deadline:
                    raise ActivityFailed(f"Until activity timed out after {timeout:.0f} s", "ActivityTimeout")
        if kind == "Filter":
            items = evaluate_value(props["items"], scope)
            if not isinstance(items, list):
                raise AdfExpressionError(f"Filter items must be an array, got {_type_name(items)}")
            kept = []
            for item in items:
                inner = Scope(scope.pipeline, scope.activities, scope.variables, item=item, has_item=True)
                if _bool("Filter condition", evaluate_value(props["condition"], inner)):
                    kept.append(item)
            return {"ItemsCount": len(items), "FilteredItemsCount": len(kept), "Value": kept}
        raise ActivityFailed(f"activity type {kind!r} is not supported by this interpreter", "Unsupported")

    def _web(self, props: Mapping[str, Any], scope: Scope) -> Any:
        url = evaluate_value(props["url"], scope)
        method = str(props.get("method", "GET")).upper()
        headers = {k: _to_string(evaluate_value(v, scope)) for k, v in props.get("headers", {}).items()}
        body = evaluate_value(props["body"], scope) if "body" in props else None
        auth = props.get("authentication")
        if auth:
            if auth.get("type") != "MSI":
                raise ActivityFailed(
                    f"authentication type {auth.get('type')!r} is not modelled", "Unsupported"
                )
            headers["Authorization"] = "Bearer " + self.token_provider(
                evaluate_value(auth["resource"], scope)
            )
        data = None
        if body is not None and method != "GET":
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.requests.append({"url": url, "method": method, "headers": headers, "body": body})
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(request, timeout=WEB_RESPONSE_TIMEOUT) as response:
                raw = response.read(MAX_WEB_RESPONSE + 1)
                code = response.status
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:2000].decode(errors="replace")
            raise ActivityFailed(
                f"Error calling the endpoint '{url}'. Response status code: '{exc.code}'. Response: {detail}",
                "2108",
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ActivityFailed(f"Error calling the endpoint '{url}': {exc}", "2108") from None
        if len(raw) > MAX_WEB_RESPONSE:
            raise ActivityFailed(f"the response of '{url}' is larger than 4 MB", "2001")
        try:
            output = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            output = {"Response": raw.decode(errors="replace")}
        if not isinstance(output, dict):
            output = {"Response": output}
        output["ADFWebActivityResponseHeaders"] = {"status": str(code)}
        return output


def _condition_met(condition: str, status: str) -> bool:
    if condition == "Completed":
        return status in ("Succeeded", "Failed")
    if condition in ("Succeeded", "Failed", "Skipped"):
        return status == condition
    raise ValueError(f"unknown dependency condition {condition!r}")
