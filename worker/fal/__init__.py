"""fal queue client, error taxonomy and typed model inputs (see /work/shared/fal-api.md)."""
from falbridge.worker.fal.client import (
    DEFAULT_QUEUE_URL,
    DEFAULT_TIMEOUT,
    QueueClient,
    close_client,
    get_client,
    key_from_env,
)
from falbridge.worker.fal.endpoints import app_id_of, fallback_queue_urls, validate_endpoint_id
from falbridge.worker.fal.errors import (
    FalConfigError,
    FalError,
    FinalError,
    ModelError,
    OutcomeUnknownError,
    ResultNotReadyError,
    RetryableError,
    detail_messages,
)
from falbridge.worker.fal.inputs import (
    EVF_SAM,
    KNOWN_ENDPOINTS,
    REGION_PROPOSAL,
    BoundingBox,
    BoundingBoxes,
    EndpointSchema,
    EvfSamInput,
    EvfSamOutput,
    FalFile,
    InputValidationError,
    RegionProposalInput,
    RegionProposalOutput,
    validate_input,
)
from falbridge.worker.fal.records import (
    CancelOutcome,
    QueueStatus,
    RequestRef,
    RequestRefLike,
    Submission,
    SubmitOptions,
)

__all__ = [
    "DEFAULT_QUEUE_URL", "DEFAULT_TIMEOUT", "QueueClient", "close_client", "get_client",
    "key_from_env", "app_id_of", "fallback_queue_urls", "validate_endpoint_id",
    "FalConfigError", "FalError", "FinalError", "ModelError", "OutcomeUnknownError",
    "ResultNotReadyError", "RetryableError", "detail_messages",
    "EVF_SAM", "KNOWN_ENDPOINTS", "REGION_PROPOSAL", "BoundingBox", "BoundingBoxes",
    "EndpointSchema", "EvfSamInput", "EvfSamOutput", "FalFile", "InputValidationError",
    "RegionProposalInput", "RegionProposalOutput", "validate_input",
    "CancelOutcome", "QueueStatus", "RequestRef", "RequestRefLike", "Submission", "SubmitOptions",
]
