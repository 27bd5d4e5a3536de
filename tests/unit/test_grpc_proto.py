"""The committed gRPC modules are what grpcio-tools makes of the committed .proto.

Run in a child process: generating needs no import of the modules, and importing them here
would clash with tritonclient's copy of the same protobuf names in this test process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2

SRC = Path(__file__).resolve().parents[2] / "src"
PROTO = "hybridai/serving/grpc_predict_v2.proto"
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2_grpc.py")


def _without_versions(text: str) -> str:
    """The tools' own version numbers aside: a newer grpcio-tools writes the same code."""
    text = re.sub(r"# Protobuf Python Version: .*", "", text)
    text = re.sub(r"GRPC_GENERATED_VERSION = '[^']*'", "", text)
    return re.sub(r"ValidateProtobufRuntimeVersion\([^)]*\)", "", text)


def test_regenerating_yields_the_committed_modules(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(SRC / PROTO),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in GENERATED:
        fresh = (tmp_path / "hybridai" / "serving" / name).read_text()
        committed = (SRC / "hybridai" / "serving" / name).read_text()
        assert _without_versions(fresh) == _without_versions(committed), (
            f"{name} is stale: regenerate it as the .proto's header says"
        )


def _fields(message: Any, prefix: str = "") -> dict[str, tuple[int, int, int, str]]:
    """Every field of a message and its nested ones: (number, type, label, message type)."""
    found = {
        f"{prefix}{message.name}.{f.name}": (f.number, f.type, f.label, f.type_name)
        for f in message.field
    }
    for nested in message.nested_type:
        found.update(_fields(nested, f"{prefix}{message.name}."))
    return found


def test_the_messages_are_wire_compatible_with_tritonclient(tmp_path: Path) -> None:
    """Triton's grpc_service.proto is a superset: each of our fields is one of its own."""
    out = tmp_path / "ours.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"--descriptor_set_out={out}",
            str(SRC / PROTO),
        ],
        check=True,
        timeout=120,
    )
    ours = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    theirs = descriptor_pb2.FileDescriptorProto()
    service_pb2.DESCRIPTOR.CopyToProto(theirs)
    assert ours.package == theirs.package == "inference"
    triton_fields: dict[str, tuple[int, int, int, str]] = {}
    for message in theirs.message_type:
        triton_fields.update(_fields(message))
    our_fields: dict[str, tuple[int, int, int, str]] = {}
    for message in ours.message_type:
        our_fields.update(_fields(message))
    assert len(our_fields) > 40
    for name, shape in our_fields.items():
        assert triton_fields.get(name) == shape, name
    triton_rpcs = {m.name: (m.input_type, m.output_type) for m in theirs.service[0].method}
    for method in ours.service[0].method:
        assert triton_rpcs[method.name] == (method.input_type, method.output_type)


def test_the_service_is_the_protocols() -> None:
    """Package, service and RPC names are what every v2 gRPC client dials."""
    text = (SRC / PROTO).read_text()
    assert "package inference;" in text and "service GRPCInferenceService" in text
    rpcs = re.findall(r"rpc (\w+)\(", text)
    assert rpcs == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
