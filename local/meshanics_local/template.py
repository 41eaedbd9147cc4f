"""template.yaml: load it (short-form tags too), translate it with the SAM translator offline, and
resolve CloudFormation intrinsics against the local platform's resources (with moto's CloudFormation).

The SAM translator wants code in S3, so every local `CodeUri` / `ContentUri` becomes the placeholder
`s3://local-code/<path>` before translating; `Template.code_path` maps a translated code location
back to the local directory.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODE_BUCKET = "local-code"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

# SAM resource type -> the property that names a local code directory.
_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


class TemplateError(Exception):
    """The template cannot be loaded, translated or resolved."""


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
class Resolver:
    """Resolves Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::If and the other intrinsics with moto's own
    CloudFormation (clean_json, parse_condition), against the parameters and the local platform's
    resources: this object is the name map moto reads (`[name]` for Ref, `.get(name)` for GetAtt)."""

    def __init__(
        self,
        parameters: Mapping[str, str],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any],
        stack_name: str = "meshanics",
        conditions: Mapping[str, Any] | None = None,
    ) -> None:
        from moto.cloudformation.parsing import LazyDict, parse_condition

        stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack_name}/local"
        self._names: dict[str, Any] = {
            **parameters,
            **{"AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID, "AWS::Partition": "aws"},
            **{"AWS::URLSuffix": "amazonaws.com", "AWS::StackName": stack_name, "AWS::StackId": stack_id},
            **{"AWS::NotificationARNs": [], "AWS::NoValue": None},
        }
        self._ref, self._get_att = ref, get_att
        self.lazy_condition_map = LazyDict()
        names: Any = self  # moto's ResourceMap, as far as clean_json and parse_condition read it
        for name, condition in (conditions or {}).items():
            self.lazy_condition_map[name] = functools.partial(
                parse_condition, condition, names, self.lazy_condition_map
            )

    def __getitem__(self, name: str) -> Any:
        return self._names[name] if name in self._names else self._ref(name)

    def get(self, logical_id: str) -> Any:
        resolver = self

        class Attributes:
            def get_cfn_attribute(self, attribute: str) -> Any:
                return resolver._get_att(logical_id, attribute)

        return Attributes()

    def resolve(self, value: Any) -> Any:
        from moto.cloudformation.parsing import clean_json

        names: Any = self
        return clean_json(value, names)

    def conditions(self) -> dict[str, bool]:
        return {name: bool(self.lazy_condition_map[name]) for name in self.lazy_condition_map}


def evaluate_conditions(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, bool]:
    """The template's Conditions, evaluated against parameter values."""

    def no_resources(name: str, *_: str) -> Any:
        raise TemplateError(f"a condition cannot refer to the resource {name}")

    return Resolver(parameters, no_resources, no_resources, conditions=template.get("Conditions")).conditions()
