"""Reading the synthesized workflow: CloudFormation's DefinitionSubstitutions applied by hand,
and a mask of where the ASL file has placeholders, to compare two renderings structurally."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from infra import spec


def token_text(value: Any) -> str:
    """A CloudFormation value as text: intrinsic functions become <Ref:X> / <GetAtt:X.Attr>."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if "Ref" in value:
        return f"<Ref:{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<GetAtt:{'.'.join(value['Fn::GetAtt'])}>"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(token_text(part) for part in parts)
    raise AssertionError(f"unexpected intrinsic {value}")


def rendered_substitutions(machine: dict[str, Any]) -> dict[str, str]:
    return {k: token_text(v) for k, v in machine["Properties"]["DefinitionSubstitutions"].items()}


def render(definition: str, substitutions: dict[str, str]) -> str:
    """What Step Functions receives: DefinitionString with every ${Name} replaced."""
    return spec.PLACEHOLDER.sub(lambda m: substitutions[m.group(1)], definition)


def _in_string(text: str, position: int) -> bool:
    line_start = text.rfind("\n", 0, position) + 1
    return text.count('"', line_start, position) % 2 == 1


def placeholder_paths(asl: str) -> dict[tuple, str]:
    """JSON path -> placeholder name, for every value of the ASL file made from a placeholder."""
    names = sorted(spec.placeholders(asl))
    numbers = {name: 900_000_000 + i for i, name in enumerate(names)}

    def sentinel(match: re.Match) -> str:
        name = match.group(1)
        return f"@@{name}@@" if _in_string(asl, match.start()) else str(numbers[name])

    document = json.loads(spec.PLACEHOLDER.sub(sentinel, asl))
    by_number = {n: name for name, n in numbers.items()}
    found: dict[tuple, str] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, (*path, key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, (*path, index))
        elif isinstance(node, int) and node in by_number:
            found[path] = by_number[node]
        elif isinstance(node, str) and "@@" in node:
            found[path] = re.search(r"@@(\w+)@@", node).group(1)

    walk(document, ())
    return found


def at(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document


def normalized(document: Any, paths: dict[tuple, str]) -> Any:
    """The document with every placeholder-made value replaced by the placeholder's name."""
    result = copy.deepcopy(document)
    for path, name in paths.items():
        parent = at(result, path[:-1])
        parent[path[-1]] = f"${{{name}}}"
    return result
