"""Error bodies and stable error codes shared by every hybridai API.

The body keeps the Open Inference Protocol's ``{"error": "..."}`` shape and adds a stable
``code`` that programs can switch on; the message is for people and says what to do.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    MALFORMED_JSON = "malformed_json"
    INVALID_INPUT = "invalid_input"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_NOT_READY = "model_not_ready"
    VERSION_NOT_FOUND = "version_not_found"
    SHAPE_MISMATCH = "shape_mismatch"
    DATATYPE_MISMATCH = "datatype_mismatch"
    INPUT_NOT_FOUND = "input_not_found"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_ENROLLMENT_TOKEN = "bad_enrollment_token"
    CERTIFICATE_REQUIRED = "certificate_required"
    CERTIFICATE_REJECTED = "certificate_rejected"
    INVALID_CSR = "invalid_csr"
    CSR_DEVICE_MISMATCH = "csr_device_mismatch"
    DIGEST_MISMATCH = "digest_mismatch"
    BATCH_OUT_OF_ORDER = "batch_out_of_order"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INTERNAL = "internal"
    MFA_REQUIRED = "mfa_required"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    SCHEMA_MISMATCH = "schema_mismatch"
    PEER_NOT_ON_SITE = "peer_not_on_site"
    INVALID_NAME = "invalid_name"
    QUERY_LIMIT = "query_limit"
    CIRCUIT_OPEN = "circuit_open"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    BAD_UPSTREAM_RESPONSE = "bad_upstream_response"
    BAD_HEADER_LENGTH = "bad_header_length"
    BINARY_SIZE_MISMATCH = "binary_size_mismatch"
    TEST_ROWS_LEAK = (
        "test_rows_leak"  # calibration rows include rows a model was trained or tested on
    )


class ErrorBody(BaseModel):
    """What every API answers on failure."""

    error: str
    code: ErrorCode


class ApiError(Exception):
    """An error that maps to one HTTP status, one stable code and one helpful message."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.message, code=self.code)
