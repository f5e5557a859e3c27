"""Typed inputs and outputs for the fal endpoints this project calls.

See docs/fal-protocol.md, "The two first-class endpoints".

Inputs are strict (no coercion, unknown fields refused) because fal bills a request
that fails inside the model; a typo must fail here, before any money is spent.
Outputs are lenient (extra fields kept) because fal may add fields at any time.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

EVF_SAM = "fal-ai/evf-sam"
REGION_PROPOSAL = "fal-ai/florence-2-large/region-proposal"

_FILE_URL_PREFIXES = ("http://", "https://", "data:")


class _StrictInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _require_text(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_string", "must not be empty")
    return value


def _require_file_url(value: str) -> str:
    _require_text(value)
    # The runner fetches this itself without our credentials, so a local path or a bare
    # host name can only fail later, inside a billed request.
    if not value.lower().startswith(_FILE_URL_PREFIXES):
        raise PydanticCustomError("file_url", "must be an http(s) URL or a data: URI")
    return value


class EvfSamInput(_StrictInput):
    """Input of ``fal-ai/evf-sam``. Defaults mirror fal's; unset fields are not sent."""

    prompt: str = Field(min_length=1, description="What to segment.")
    image_url: str = Field(min_length=1, description="Image to segment (URL or data URI).")
    negative_prompt: str | None = None
    semantic_type: bool = False
    mask_only: bool = True
    use_grounding_dino: bool = False
    revert_mask: bool = False
    blur_mask: int = Field(
        default=0,
        ge=0,
        le=50,
        description="Gaussian kernel size. fal says 'must be odd' yet defaults to 0, so 0 "
        "means 'no blur' and any other value must be odd (largest usable: 49).",
    )
    # fal's published upper bound was cut off in its own docs; none is enforced here.
    expand_mask: int = Field(default=0, ge=0)
    fill_holes: bool = False

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        return _require_text(value)

    @field_validator("image_url")
    @classmethod
    def _image_url_is_fetchable(cls, value: str) -> str:
        return _require_file_url(value)

    @field_validator("blur_mask")
    @classmethod
    def _blur_mask_zero_or_odd(cls, value: int) -> int:
        if value != 0 and value % 2 == 0:
            raise PydanticCustomError("odd_required", "must be odd (got {value})", {"value": value})
        return value


class RegionProposalInput(_StrictInput):
    """Input of ``fal-ai/florence-2-large/region-proposal``."""

    image_url: str = Field(min_length=1)

    @field_validator("image_url")
    @classmethod
    def _image_url_is_fetchable(cls, value: str) -> str:
        return _require_file_url(value)


class _LenientOutput(BaseModel):
    model_config = ConfigDict(extra="allow")


class FalFile(_LenientOutput):
    """A file on fal's CDN; ``width``/``height`` appear only for images."""

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None


class EvfSamOutput(_LenientOutput):
    image: FalFile


class BoundingBox(_LenientOutput):
    """Top-left corner plus size; units presumed input-image pixels (unconfirmed)."""

    x: float
    y: float
    w: float
    h: float
    label: str = ""


class BoundingBoxes(_LenientOutput):
    bboxes: list[BoundingBox]


class RegionProposalOutput(_LenientOutput):
    results: BoundingBoxes
    image: FalFile | None = None


class EndpointSchema(NamedTuple):
    input_model: type[BaseModel]
    output_model: type[BaseModel]


KNOWN_ENDPOINTS: Mapping[str, EndpointSchema] = MappingProxyType(
    {
        EVF_SAM: EndpointSchema(EvfSamInput, EvfSamOutput),
        REGION_PROPOSAL: EndpointSchema(RegionProposalInput, RegionProposalOutput),
    }
)


# A request with more problems than this gets the first ones and a count of the rest:
# an error answer stays small however many keys were sent.
MAX_ERRORS_REPORTED = 20


def summarize_errors(errors: list[dict[str, str]], omitted: int = 0) -> str:
    """`field: message; ...`, then `... and N more` when `omitted` were left out."""
    reasons = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return reasons + (f"; ... and {omitted} more" if omitted else "")


class InputValidationError(ValueError):
    """Input rejected before sending. ``errors``: ``[{"field": ..., "message": ...}]``, at
    most MAX_ERRORS_REPORTED of them; ``omitted``: how many more there were."""

    def __init__(self, endpoint_id: str, errors: list[dict[str, str]], omitted: int = 0) -> None:
        self.endpoint_id = endpoint_id
        self.errors = errors[:MAX_ERRORS_REPORTED]
        self.omitted = omitted + len(errors) - len(self.errors)
        super().__init__(f"{endpoint_id}: {summarize_errors(self.errors, self.omitted)}")

    def __reduce__(self) -> tuple[type, tuple[str, list[dict[str, str]], int]]:
        # Celery pickles task exceptions; the default would call __init__ with the message only.
        return type(self), (self.endpoint_id, self.errors, self.omitted)


def validate_input(endpoint_id: str, data: Mapping[str, Any] | BaseModel) -> dict[str, Any]:
    """Return the JSON object to send for ``endpoint_id``.

    Known endpoints are validated and only the fields the caller set are returned (fal
    applies its own defaults, so we never invent values). Other endpoints pass through
    unchanged, but must still be a JSON object.
    """
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json", exclude_unset=True)
    if not isinstance(data, Mapping):
        raise InputValidationError(
            endpoint_id,
            [{"field": "(input)", "message": f"must be a JSON object (got {_json_type(data)})"}],
        )
    schema = KNOWN_ENDPOINTS.get(endpoint_id)
    if schema is None:
        return dict(data)
    try:
        model = schema.input_model.model_validate(dict(data))
    except ValidationError as exc:
        # Only the errors reported are made readable (a suggestion each): there may be 100 000.
        found = sorted(exc.errors(include_url=False), key=_field)
        shown = [_readable(error, schema.input_model) for error in found[:MAX_ERRORS_REPORTED]]
        raise InputValidationError(endpoint_id, shown, omitted=len(found) - len(shown)) from None
    return model.model_dump(exclude_unset=True)


_TYPE_MESSAGES = {
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
}


def _field(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(input)"


def _readable(error: Any, model: type[BaseModel]) -> dict[str, str]:
    field = _field(error)
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind == "missing":
        message = "field required"
    elif kind == "extra_forbidden":
        message = "unknown field" + _did_you_mean(str(error["loc"][-1]), model)
    elif kind in _TYPE_MESSAGES:
        message = f"{_TYPE_MESSAGES[kind]} (got {_json_type(error['input'])})"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "greater_than_equal":
        message = f"must be >= {context['ge']} (got {error['input']})"
    elif kind == "less_than_equal":
        message = f"must be <= {context['le']} (got {error['input']})"
    else:
        message = error["msg"]
    return {"field": field, "message": message}


def _did_you_mean(name: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(name, list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _json_type(value: Any) -> str:
    # Only the type is reported, never the value: inputs may be megabytes of data URI.
    if value is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)
