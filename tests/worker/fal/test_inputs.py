"""Typed fal inputs: every field's type, limit and default, and readable rejections."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falbridge.worker.fal import (
    EVF_SAM,
    KNOWN_ENDPOINTS,
    REGION_PROPOSAL,
    EvfSamInput,
    EvfSamOutput,
    FalFile,
    InputValidationError,
    RegionProposalInput,
    RegionProposalOutput,
    validate_input,
)

IMAGE = "https://example.com/cat.png"
MINIMAL_EVF = {"prompt": "the cat", "image_url": IMAGE}


def rejection(endpoint_id: str, data: object) -> InputValidationError:
    with pytest.raises(InputValidationError) as caught:
        validate_input(endpoint_id, data)
    return caught.value


def messages_by_field(error: InputValidationError) -> dict[str, str]:
    return {entry["field"]: entry["message"] for entry in error.errors}


# --- evf-sam: defaults and what is sent -------------------------------------------------


def test_evf_sam_defaults_match_fal_documentation():
    model = EvfSamInput(**MINIMAL_EVF)
    assert model.negative_prompt is None
    assert model.semantic_type is False
    assert model.mask_only is True
    assert model.use_grounding_dino is False
    assert model.revert_mask is False
    assert model.blur_mask == 0
    assert model.expand_mask == 0
    assert model.fill_holes is False


def test_only_fields_the_caller_set_are_sent():
    sent = validate_input(EVF_SAM, {**MINIMAL_EVF, "mask_only": False, "blur_mask": 5})
    assert sent == {**MINIMAL_EVF, "mask_only": False, "blur_mask": 5}


def test_every_evf_sam_field_accepts_its_documented_type():
    full = {
        **MINIMAL_EVF,
        "negative_prompt": "the dog",
        "semantic_type": True,
        "mask_only": False,
        "use_grounding_dino": True,
        "revert_mask": True,
        "blur_mask": 7,
        "expand_mask": 12,
        "fill_holes": True,
    }
    assert validate_input(EVF_SAM, full) == full


def test_a_model_instance_is_accepted_and_sends_only_set_fields():
    assert validate_input(EVF_SAM, EvfSamInput(**MINIMAL_EVF, fill_holes=True)) == {
        **MINIMAL_EVF,
        "fill_holes": True,
    }


def test_data_uri_image_is_accepted():
    sent = validate_input(EVF_SAM, {"prompt": "x", "image_url": "data:image/png;base64,iVBORw0KGgo="})
    assert sent["image_url"].startswith("data:")


# --- evf-sam: rejections ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["prompt", "image_url"])
def test_required_fields(missing):
    data = dict(MINIMAL_EVF)
    del data[missing]
    assert messages_by_field(rejection(EVF_SAM, data)) == {missing: "field required"}


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize("field", ["prompt", "image_url"])
def test_required_text_must_not_be_empty(field, blank):
    assert messages_by_field(rejection(EVF_SAM, {**MINIMAL_EVF, field: blank})) == {
        field: "must not be empty"
    }


@pytest.mark.parametrize("image_url", ["/tmp/cat.png", "cat.png", "ftp://example.com/cat.png"])
def test_image_url_must_be_fetchable_by_the_runner(image_url):
    message = messages_by_field(rejection(EVF_SAM, {**MINIMAL_EVF, "image_url": image_url}))["image_url"]
    assert message == "must be an http(s) URL or a data: URI"


@pytest.mark.parametrize(
    "field, wrong, expected",
    [
        ("prompt", 42, "must be a string (got integer)"),
        ("image_url", ["a"], "must be a string (got array)"),
        ("negative_prompt", 1, "must be a string (got integer)"),
        ("semantic_type", 1, "must be true or false (got integer)"),
        ("mask_only", "true", "must be true or false (got string)"),
        ("use_grounding_dino", None, "must be true or false (got null)"),
        ("revert_mask", 0, "must be true or false (got integer)"),
        ("fill_holes", "yes", "must be true or false (got string)"),
        ("blur_mask", True, "must be an integer (got boolean)"),
        ("blur_mask", 3.0, "must be an integer (got number)"),
        ("blur_mask", "3", "must be an integer (got string)"),
        ("expand_mask", 1.5, "must be an integer (got number)"),
        ("expand_mask", None, "must be an integer (got null)"),
    ],
)
def test_wrong_types_are_not_coerced(field, wrong, expected):
    assert messages_by_field(rejection(EVF_SAM, {**MINIMAL_EVF, field: wrong})) == {field: expected}


def test_negative_prompt_may_be_explicitly_null():
    assert validate_input(EVF_SAM, {**MINIMAL_EVF, "negative_prompt": None})["negative_prompt"] is None


@pytest.mark.parametrize("value", [0, 1, 3, 25, 49])
def test_blur_mask_accepts_zero_and_odd_values_up_to_49(value):
    assert validate_input(EVF_SAM, {**MINIMAL_EVF, "blur_mask": value})["blur_mask"] == value


@pytest.mark.parametrize(
    "value, expected",
    [
        (2, "must be odd (got 2)"),
        (4, "must be odd (got 4)"),
        (50, "must be odd (got 50)"),
        (51, "must be <= 50 (got 51)"),
        (-1, "must be >= 0 (got -1)"),
    ],
)
def test_blur_mask_rejections(value, expected):
    assert messages_by_field(rejection(EVF_SAM, {**MINIMAL_EVF, "blur_mask": value})) == {
        "blur_mask": expected
    }


@given(st.integers(min_value=-1000, max_value=1000))
def test_blur_mask_rule_for_any_integer(value):
    allowed = 0 <= value <= 50 and (value == 0 or value % 2 == 1)
    try:
        validate_input(EVF_SAM, {**MINIMAL_EVF, "blur_mask": value})
    except InputValidationError:
        assert not allowed
    else:
        assert allowed


@pytest.mark.parametrize("value", [0, 1, 10_000])
def test_expand_mask_has_no_upper_bound(value):
    assert validate_input(EVF_SAM, {**MINIMAL_EVF, "expand_mask": value})["expand_mask"] == value


def test_expand_mask_must_not_be_negative():
    assert messages_by_field(rejection(EVF_SAM, {**MINIMAL_EVF, "expand_mask": -1})) == {
        "expand_mask": "must be >= 0 (got -1)"
    }


def test_unknown_field_is_rejected_by_name_with_a_suggestion():
    error = rejection(EVF_SAM, {**MINIMAL_EVF, "blur_masks": 3})
    assert error.errors == [{"field": "blur_masks", "message": "unknown field (did you mean 'blur_mask'?)"}]
    assert "blur_masks" in str(error)


def test_message_is_one_readable_line_listing_every_problem():
    error = rejection(EVF_SAM, {"image_url": IMAGE, "blur_mask": 4})
    assert str(error) == "fal-ai/evf-sam: blur_mask: must be odd (got 4); prompt: field required"
    assert "\n" not in str(error)
    assert isinstance(error, ValueError)
    assert error.endpoint_id == EVF_SAM


def test_rejection_never_echoes_input_values():
    big_value = "ftp://example.com/" + "A" * 5000
    error = rejection(EVF_SAM, {"prompt": [big_value], "image_url": big_value})
    assert set(messages_by_field(error)) == {"prompt", "image_url"}
    assert "AAAA" not in str(error)


# --- region proposal --------------------------------------------------------------------


def test_region_proposal_takes_only_an_image_url():
    assert validate_input(REGION_PROPOSAL, {"image_url": IMAGE}) == {"image_url": IMAGE}
    assert messages_by_field(rejection(REGION_PROPOSAL, {})) == {"image_url": "field required"}
    assert messages_by_field(rejection(REGION_PROPOSAL, {"image_url": IMAGE, "prompt": "x"})) == {
        "prompt": "unknown field"
    }
    assert messages_by_field(rejection(REGION_PROPOSAL, {"image_url": 3})) == {
        "image_url": "must be a string (got integer)"
    }
    assert RegionProposalInput(image_url=IMAGE).image_url == IMAGE


# --- pass-through and non-objects -------------------------------------------------------


def test_unknown_endpoints_pass_through_untouched():
    data = {"prompt": "x", "nested": {"a": [1, 2.5, None]}, "weird_field": True}
    sent = validate_input("fal-ai/flux/dev", data)
    assert sent == data
    assert sent is not data  # a copy: later mutation by the caller cannot alter what was checked


def test_other_florence_sub_endpoints_are_not_validated_as_region_proposal():
    data = {"image_url": IMAGE, "text_input": "a cat"}
    assert validate_input("fal-ai/florence-2-large/caption-to-phrase-grounding", data) == data


@pytest.mark.parametrize("endpoint_id", [EVF_SAM, "fal-ai/flux/dev"])
@pytest.mark.parametrize("data, kind", [([1], "array"), ("text", "string"), (None, "null")])
def test_input_must_be_a_json_object(endpoint_id, data, kind):
    error = rejection(endpoint_id, data)
    assert error.errors == [{"field": "(input)", "message": f"must be a JSON object (got {kind})"}]


# --- outputs ----------------------------------------------------------------------------


def test_evf_sam_output_parses_fal_file_and_keeps_unknown_fields():
    output = EvfSamOutput.model_validate(
        {
            "image": {
                "url": "https://v3.fal.media/files/x/mask.png",
                "content_type": "image/png",
                "file_name": "mask.png",
                "file_size": 20411,
                "new_field": 1,
            }
        }
    )
    assert output.image.url.endswith("mask.png")
    assert output.image.width is None
    assert output.image.model_extra == {"new_field": 1}


def test_fal_file_requires_a_url():
    with pytest.raises(ValueError):
        FalFile.model_validate({"content_type": "image/png"})


def test_region_proposal_output_with_and_without_image():
    boxes = {"bboxes": [{"x": 34.5, "y": 120, "w": 410.2, "h": 233.7}]}
    without = RegionProposalOutput.model_validate({"results": boxes})
    assert without.image is None
    assert without.results.bboxes[0].label == ""
    assert without.results.bboxes[0].y == 120.0
    nulled = RegionProposalOutput.model_validate({"results": boxes, "image": None})
    assert nulled.image is None
    with_image = RegionProposalOutput.model_validate(
        {"results": boxes, "image": {"url": "https://v3.fal.media/b.png", "width": 1024, "height": 683}}
    )
    assert (with_image.image.width, with_image.image.height) == (1024, 683)


def test_known_endpoints_map_ids_to_input_and_output_models():
    assert KNOWN_ENDPOINTS[EVF_SAM] == (EvfSamInput, EvfSamOutput)
    assert KNOWN_ENDPOINTS[REGION_PROPOSAL].input_model is RegionProposalInput
    assert KNOWN_ENDPOINTS[REGION_PROPOSAL].output_model is RegionProposalOutput
    with pytest.raises(TypeError):
        KNOWN_ENDPOINTS["x/y"] = KNOWN_ENDPOINTS[EVF_SAM]  # type: ignore[index]
