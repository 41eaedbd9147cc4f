"""template.yaml: load it (short-form tags too), translate it with the SAM translator offline, and
resolve CloudFormation intrinsics against the local platform's resources.

The SAM translator wants code in S3, so every local `CodeUri` / `ContentUri` becomes the placeholder
`s3://local-code/<path>` before translating; `Template.code_path` maps a translated code location
back to the local directory.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODE_BUCKET = "local-code"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PARTITION = "aws"

# SAM resource type -> the property that names a local code directory.
_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class TemplateError(Exception):
    """The template cannot be loaded, translated or resolved."""


class _NoValue:
    """AWS::NoValue: the property is removed."""


NO_VALUE = _NoValue()


def load(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML or JSON template, with !Ref / !GetAtt / !Sub short forms."""
    from samtranslator.yaml_helper import yaml_parse

    parsed = yaml_parse(path.read_text(encoding="utf-8"))
    if not isinstance(parsed, dict) or "Resources" not in parsed:
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return parsed


def parameter_values(template: Mapping[str, Any], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every parameter's value: its default unless overridden (unknown overrides are an error)."""
    declared = template.get("Parameters") or {}
    unknown = sorted(set(overrides or {}) - set(declared))
    if unknown:
        raise TemplateError(f"unknown template parameter(s): {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in declared.items():
        if overrides and name in overrides:
            values[name] = str(overrides[name])
        elif "Default" in spec:
            default = spec["Default"]
            values[name] = ",".join(map(str, default)) if isinstance(default, list) else str(default)
        else:
            raise TemplateError(f"parameter {name} has no default; pass it as an override")
    return values


@dataclass
class Template:
    """The SAM template, its translation to plain CloudFormation, and where its code lives."""

    path: Path
    raw: dict[str, Any]
    translated: dict[str, Any]
    parameters: dict[str, str]
    code_locations: dict[str, Path] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.translated["Resources"]
        return resources

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") in types}

    def code_path(self, location: Mapping[str, Any]) -> Path | None:
        """The local directory behind a translated `Code` / `Content` ({S3Bucket, S3Key})."""
        if location.get("S3Bucket") != CODE_BUCKET:
            return None
        return self.code_locations.get(str(location.get("S3Key")))


def _placeholder_code(template: dict[str, Any], root: Path) -> dict[str, Path]:
    """Replace local code paths with s3://local-code/<path>; return S3 key -> local directory."""
    locations: dict[str, Path] = {}

    def replace(properties: dict[str, Any], key: str) -> None:
        value = properties.get(key)
        if isinstance(value, str) and not value.startswith("s3://"):
            s3_key = value
            locations[s3_key] = (root / value).resolve()
            properties[key] = f"s3://{CODE_BUCKET}/{s3_key}"

    globals_function = (template.get("Globals") or {}).get("Function") or {}
    replace(globals_function, "CodeUri")
    for resource in template["Resources"].values():
        prop = _CODE_PROPERTIES.get(resource.get("Type", ""))
        if prop and isinstance(resource.get("Properties"), dict):
            replace(resource["Properties"], prop)
    return locations


def translate(path: Path, overrides: Mapping[str, str] | None = None) -> Template:
    """Load and translate the template offline (no AWS calls: the managed-policy map is a stub)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.public.exceptions import InvalidDocumentException
    from samtranslator.translator.translator import Translator

    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    raw = load(path)
    values = parameter_values(raw, overrides)
    document = copy.deepcopy(raw)
    locations = _placeholder_code(document, path.parent)
    session = boto3.session.Session(
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106
    )
    translator = Translator(managed_policy_map={}, sam_parser=Parser(), boto_session=session)
    sam_values: dict[str, Any] = dict(values) | {"AWS::AccountId": ACCOUNT_ID}
    try:
        translated = translator.translate(document, parameter_values=sam_values, get_managed_policy_map=lambda: {})
    except InvalidDocumentException as invalid:
        causes = "; ".join(str(c) for c in invalid.causes)
        raise TemplateError(f"SAM could not translate {path.name}: {causes}") from invalid
    return Template(path=path, raw=raw, translated=translated, parameters=values, code_locations=locations)


# ------------------------------------------------------------------------------- intrinsics
RefLookup = Callable[[str], Any]
AttLookup = Callable[[str, str], Any]


@dataclass
class Resolver:
    """Resolves Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::If and friends."""

    parameters: Mapping[str, str]
    ref: RefLookup
    get_att: AttLookup
    stack_name: str = "meshanics"
    conditions: Mapping[str, bool] = field(default_factory=dict)
    region: str = REGION
    account_id: str = ACCOUNT_ID

    def pseudo(self, name: str) -> Any:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, argument)
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not NO_VALUE}

    def _lookup_ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        return self.ref(name)

    def _intrinsic(self, key: str, argument: Any) -> Any:
        if key == "Ref":
            return self._lookup_ref(str(self.resolve(argument)))
        if key == "Fn::GetAtt":
            target = argument.split(".", 1) if isinstance(argument, str) else self.resolve(argument)
            return self.get_att(str(target[0]), str(target[1]))
        if key == "Fn::Sub":
            return self._sub(argument)
        if key == "Fn::Join":
            separator, items = argument
            return str(separator).join(str(i) for i in self.resolve(items))
        if key == "Fn::Select":
            index, items = self.resolve(argument)
            return items[int(index)]
        if key == "Fn::Split":
            separator, text = self.resolve(argument)
            return str(text).split(str(separator))
        if key == "Fn::If":
            condition, when_true, when_false = argument
            return self.resolve(when_true if self.conditions.get(condition, False) else when_false)
        if key == "Fn::Base64":
            import base64

            return base64.b64encode(str(self.resolve(argument)).encode()).decode()
        if key == "Fn::GetAZs":
            return [f"{self.region}{z}" for z in "abc"]
        if key == "Fn::ToJsonString":
            import json

            return json.dumps(self.resolve(argument), separators=(",", ":"))
        if key == "Condition":
            return self.conditions.get(str(argument), False)
        raise TemplateError(f"{key} is not supported by the local platform")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], {k: self.resolve(v) for k, v in argument[1].items()}
        else:
            text, variables = argument, {}
        out: list[str] = []
        i = 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.find("}", start)
            if end < 0:
                raise TemplateError(f"unterminated ${{ in Fn::Sub {text!r}")
            name = text[start + 2 : end]
            if name.startswith("!"):  # ${!Literal} is the literal ${Literal}
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                out.append(str(self.get_att(logical, attribute)))
            else:
                out.append(str(self._lookup_ref(name)))
            i = end + 1
        return "".join(out)


def evaluate_conditions(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, bool]:
    """The template's Conditions, evaluated against parameter values."""
    raw: Mapping[str, Any] = template.get("Conditions") or {}
    done: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            (key, argument), *_ = node.items()
            if key == "Ref":
                return parameters.get(argument, argument)
            if key == "Condition":
                return condition(argument)
            if key == "Fn::Equals":
                return str(value(argument[0])) == str(value(argument[1]))
            if key == "Fn::Not":
                return not value(argument[0])
            if key == "Fn::And":
                return all(value(a) for a in argument)
            if key == "Fn::Or":
                return any(value(a) for a in argument)
        return node

    def condition(name: str) -> bool:
        if name not in done:
            done[name] = bool(value(raw[name]))
        return done[name]

    for name in raw:
        condition(name)
    return done
