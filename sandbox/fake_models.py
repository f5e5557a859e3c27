"""Fake models: what each endpoint answers for a given input.

See docs/fal-protocol.md, "The two first-class endpoints".

A model run yields a `ModelOutcome`: the HTTP status and body the model "returned". The
queue keeps that pair and replays it on the result GET, like fal does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import httpx

from falbridge.sandbox import images
from falbridge.sandbox.files import FileStore

EVF_SAM = "fal-ai/evf-sam"
FLORENCE_REGION_PROPOSAL = "fal-ai/florence-2-large/region-proposal"


@dataclass(frozen=True)
class ModelOutcome:
    http_status: int
    body: Any
    # Set for flat infrastructure errors ({"detail": str, "error_type": str}); those also
    # carry the X-Fal-Error-Type header. Model errors ({"detail": [...]}) leave it None.
    request_error_type: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.http_status < 300

    @property
    def error_type(self) -> str | None:
        if self.ok:
            return None
        if self.request_error_type:
            return self.request_error_type
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            return detail[0].get("type")
        return "internal_error"

    @property
    def error_message(self) -> str | None:
        if self.ok:
            return None
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            parts = [f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg')}" for item in detail]
            return "; ".join(parts)
        return f"Invalid status code: {self.http_status}"


def request_error(status: int, detail: str, error_type: str) -> ModelOutcome:
    return ModelOutcome(status, {"detail": detail, "error_type": error_type}, error_type)


INJECTED_FAILURE = request_error(500, "Injected runner failure", "runner_server_error")
CANCELLED = request_error(499, "Request cancelled by client", "client_cancelled")
START_TIMEOUT = request_error(504, "Request timed out before a runner picked it up", "request_timeout")


@dataclass
class ModelContext:
    base_url: str
    rng: random.Random
    files: FileStore
    http: httpx.Client
    fetch_timeout_s: float
    florence_image_probability: float


def run_model(endpoint_id: str, payload: dict[str, Any], ctx: ModelContext) -> ModelOutcome:
    if endpoint_id == EVF_SAM:
        return _evf_sam(payload, ctx)
    if endpoint_id == FLORENCE_REGION_PROPOSAL:
        return _florence_region_proposal(payload, ctx)
    return ModelOutcome(200, {"endpoint_id": endpoint_id, "echo": payload})


def enlarged(outcome: ModelOutcome, min_bytes: int) -> ModelOutcome:
    """The `large_result` fault: a successful output padded past `min_bytes` of JSON (a
    model's verbose metadata, as some of fal's endpoints return), so fal keeps it only
    six minutes. Errors stay as they are."""
    if not outcome.ok or not isinstance(outcome.body, dict):
        return outcome
    return ModelOutcome(outcome.http_status, {**outcome.body, "sandbox_padding": "x" * min_bytes})


def with_nul(outcome: ModelOutcome) -> ModelOutcome:
    """The `unstorable_result` fault: a successful output whose text holds a NUL character."""
    if not outcome.ok or not isinstance(outcome.body, dict):
        return outcome
    return ModelOutcome(outcome.http_status, {**outcome.body, "caption": "a cat\u0000"})


def _invalid(errors: list[dict[str, Any]]) -> ModelOutcome:
    return ModelOutcome(422, {"detail": errors})


def _error(field: str, msg: str, kind: str, **ctx: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": ["body", field], "msg": msg, "type": kind}
    if ctx:
        item["ctx"] = ctx
    return item


def _input_size(payload: dict[str, Any], ctx: ModelContext) -> tuple[int, int] | ModelOutcome:
    url = payload["image_url"]
    # Our own CDN's files (uploads, earlier outputs) are read in place: the URL may name a
    # TLS front or public host this process cannot reach or does not trust.
    own = ctx.files.lookup_url(url) if isinstance(url, str) else None
    try:
        if own is not None:
            return images.checked_size(own.data)
        return images.load_image_size(url, ctx.http, ctx.fetch_timeout_s)
    except images.ImageInputError as exc:
        item = _error("image_url", exc.message, exc.error_type)
        item["input"] = url
        return _invalid([item])


_EVF_BOOLS = ("semantic_type", "mask_only", "use_grounding_dino", "revert_mask", "fill_holes")


def validate_evf_sam(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Mirror the pydantic model behind fal-ai/evf-sam; unknown fields are ignored."""
    errors = []
    for name in ("prompt", "image_url"):
        if name not in payload:
            errors.append(_error(name, "field required", "value_error.missing"))
        elif not isinstance(payload[name], str):
            errors.append(_error(name, "str type expected", "type_error.str"))
    if "negative_prompt" in payload and not isinstance(payload["negative_prompt"], (str, type(None))):
        errors.append(_error("negative_prompt", "str type expected", "type_error.str"))
    for name in _EVF_BOOLS:
        if name in payload and not isinstance(payload[name], bool):
            errors.append(_error(name, "value could not be parsed to a boolean", "type_error.bool"))
    blur_errors = _check_int(payload, "blur_mask", low=0, high=50)
    blur = payload.get("blur_mask", 0)
    if not blur_errors and blur != 0 and blur % 2 == 0:  # 0 (the default) means "no blur"
        blur_errors = [_error("blur_mask", "blur_mask must be an odd number", "value_error")]
    errors += blur_errors
    errors += _check_int(payload, "expand_mask", low=0, high=None)
    return errors


def _check_int(payload: dict[str, Any], name: str, low: int, high: int | None) -> list[dict[str, Any]]:
    if name not in payload:
        return []
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int):
        return [_error(name, "value is not a valid integer", "type_error.integer")]
    if value < low:
        return [
            _error(
                name,
                f"ensure this value is greater than or equal to {low}",
                "value_error.number.not_ge",
                limit_value=low,
            )
        ]
    if high is not None and value > high:
        return [
            _error(
                name,
                f"ensure this value is less than or equal to {high}",
                "value_error.number.not_le",
                limit_value=high,
            )
        ]
    return []


def _evf_sam(payload: dict[str, Any], ctx: ModelContext) -> ModelOutcome:
    errors = validate_evf_sam(payload)
    if errors:
        return _invalid(errors)
    size = _input_size(payload, ctx)
    if isinstance(size, ModelOutcome):
        return size
    width, height = size
    mask = images.ellipse_mask_png(
        width, height, invert=payload.get("revert_mask", False), grow=payload.get("expand_mask", 0)
    )
    return ModelOutcome(200, {"image": ctx.files.put(ctx.base_url, "mask.png", "image/png", mask)})


def _florence_region_proposal(payload: dict[str, Any], ctx: ModelContext) -> ModelOutcome:
    if "image_url" not in payload:
        return _invalid([_error("image_url", "field required", "value_error.missing")])
    if not isinstance(payload["image_url"], str):
        return _invalid([_error("image_url", "str type expected", "type_error.str")])
    size = _input_size(payload, ctx)
    if isinstance(size, ModelOutcome):
        return size
    width, height = size
    output: dict[str, Any] = {"results": {"bboxes": _boxes(width, height, ctx.rng)}}
    if ctx.rng.random() < ctx.florence_image_probability:
        picture = ctx.files.put(ctx.base_url, "boxes.png", "image/png", images.flat_png(width, height))
        output["image"] = {**picture, "width": width, "height": height}
    return ModelOutcome(200, output)


def _boxes(width: int, height: int, rng: random.Random) -> list[dict[str, Any]]:
    """1-5 boxes strictly inside the image, rounding included (margins exceed 0.01 px)."""
    boxes = []
    for _ in range(rng.randint(1, 5)):
        x = width * (0.05 + 0.45 * rng.random())
        y = height * (0.05 + 0.45 * rng.random())
        w = (width - x) * (0.1 + 0.8 * rng.random())
        h = (height - y) * (0.1 + 0.8 * rng.random())
        boxes.append({"x": round(x, 2), "y": round(y, 2), "w": round(w, 2), "h": round(h, 2), "label": ""})
    return boxes
