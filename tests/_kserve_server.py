"""A real KServe ModelServer serving one ONNX file over Open Inference Protocol v2 REST.

Run as a script (``python tests/_kserve_server.py --model_name pm --onnx FILE --http_port N``)
by the remote tier's integration test and ``bench/serving_remote.py``: the cloud forwards to it
as it would to a KServe InferenceService. The model runs the file with onnxruntime on the CPU,
so its answers match the cloud's own runtime for the same file. ``--bearer_token_env NAME``
makes it refuse requests without ``Authorization: Bearer $NAME`` (the auth the cloud sends).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import HTTPException
from kserve import Model, ModelServer, model_server
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

_V2_DATATYPES = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.bool_): "BOOL",
}


class OnnxModel(Model):
    def __init__(self, name: str, path: str, token: str | None) -> None:
        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.token = token
        self.ready = True

    def _types(self, args: list[Any]) -> list[dict[str, Any]]:
        datatypes = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(double)": "FP64"}
        return [
            {
                "name": a.name,
                "datatype": datatypes.get(a.type, "FP32"),
                "shape": [d if isinstance(d, int) else -1 for d in a.shape],
            }
            for a in args
        ]

    def get_input_types(self) -> list[dict[str, Any]]:
        return self._types(self.session.get_inputs())

    def get_output_types(self) -> list[dict[str, Any]]:
        return self._types(self.session.get_outputs())

    async def predict(
        self,
        payload: dict[str, Any] | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        if self.token is not None:
            sent = (headers or {}).get("authorization", "")
            if sent != f"Bearer {self.token}":
                raise HTTPException(401, "missing or wrong bearer token")
        assert isinstance(payload, InferRequest)
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        results = self.session.run(self.outputs, feeds)
        outputs = []
        for name, value in zip(self.outputs, results, strict=True):
            array = np.asarray(value)
            out = InferOutput(name, list(array.shape), _V2_DATATYPES[array.dtype])
            out.set_data_from_numpy(array, binary_data=False)
            outputs.append(out)
        return InferResponse(payload.id or "", self.name, outputs)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--bearer_token_env", default=None)
    args, _ = parser.parse_known_args()
    token = os.environ[args.bearer_token_env] if args.bearer_token_env else None
    model = OnnxModel(args.model_name, args.onnx, token)
    ModelServer(http_port=args.http_port, enable_grpc=False, workers=1).start([model])


if __name__ == "__main__":
    main()
