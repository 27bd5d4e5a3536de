"""Helpers for rollout tests: an ONNX model that registers fine but no runtime can load."""

from __future__ import annotations

import onnx


def unloadable(data: bytes) -> bytes:
    """``data`` with its first operator renamed to one that does not exist.

    It is still a well-formed ONNX protobuf with typed inputs and outputs, so the registry
    accepts, hashes and signs it; ONNX Runtime then refuses to build a session from it, which
    is a load failure on the device (not a digest or signature refusal).
    """
    model = onnx.load_model_from_string(data)
    model.graph.node[0].op_type = "NoSuchOperator"
    model.graph.node[0].domain = "ai.hybridai.missing"
    model.opset_import.append(onnx.helper.make_opsetid("ai.hybridai.missing", 1))
    return model.SerializeToString()
