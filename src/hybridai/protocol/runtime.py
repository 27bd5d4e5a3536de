"""How a model runs in ONNX Runtime: execution providers in order, their options, threads.

Declared with a model's deployment (``PlacementPolicy.runtime``), so it reaches every edge in the
model's ``ModelAssignment`` and the cloud reads it from the same deployment; both create the
model's session from it (``serving.providers``). Unknown keys, unknown provider names and
options for a provider the model does not list are refused when the deployment is made: a typo
is an error there, not a model that quietly runs somewhere else.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

CPU_PROVIDER = "CPUExecutionProvider"

# ONNX Runtime's provider names (``onnxruntime.get_all_providers()``, plus ones older releases
# had); a test checks that every name the installed onnxruntime knows is here.
KNOWN_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "NvTensorRTRTXExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "VitisAIExecutionProvider",
    "QNNExecutionProvider",
    "NnapiExecutionProvider",
    "VSINPUExecutionProvider",
    "JsExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "RknpuExecutionProvider",
    "WebNNExecutionProvider",
    "WebGpuExecutionProvider",
    "XnnpackExecutionProvider",
    "CANNExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "AzureExecutionProvider",
    CPU_PROVIDER,
)

# The hardware an edge or cloud tries first, when neither the model nor its settings say: GPUs,
# then Intel and Windows/Apple accelerators, then the CPU. TensorRT is left out on purpose: it
# builds an engine when a model loads (minutes), so a model or a device opts in by naming it.
DEFAULT_PROVIDER_ORDER: tuple[str, ...] = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
    CPU_PROVIDER,
)

GraphOptimization = Literal["disabled", "basic", "extended", "all"]
ExecutionMode = Literal["sequential", "parallel"]


def check_provider(name: str) -> str:
    if name not in KNOWN_PROVIDERS:
        raise ValueError(
            f"unknown ONNX Runtime execution provider {name!r}; use one of "
            + ", ".join(KNOWN_PROVIDERS)
        )
    return name


def check_providers(names: list[str]) -> list[str]:
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"execution provider {', '.join(doubled)} is listed twice: list it once")
    return names


ExecutionProvider = Annotated[str, AfterValidator(check_provider)]
ProviderOrder = Annotated[
    list[ExecutionProvider], Field(min_length=1, max_length=16), AfterValidator(check_providers)
]
OptionName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")]
OptionValue = Annotated[str, Field(max_length=1024)] | bool | int | float
ProviderOptions = Annotated[dict[OptionName, OptionValue], Field(max_length=64)]


class RuntimeOptions(BaseModel):
    """A model's ONNX Runtime session: where it runs and with how many threads.

    Every field is optional; unset, the server's own setting applies (its
    ``execution_providers`` order, its thread count, ONNX Runtime's defaults).
    """

    model_config = ConfigDict(extra="forbid")

    execution_providers: ProviderOrder | None = Field(
        default=None,
        description="Providers to try, most preferred first; those the machine lacks are "
        "skipped and the CPU is always the last resort.",
    )
    provider_options: dict[ExecutionProvider, ProviderOptions] = Field(
        default_factory=dict,
        description="Options per provider, as ONNX Runtime names them, e.g. "
        '{"CUDAExecutionProvider": {"device_id": 0}}.',
    )
    intra_op_threads: int | None = Field(
        default=None, ge=1, le=1024, description="Threads inside one operator."
    )
    inter_op_threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="Threads running operators side by side (execution_mode parallel only).",
    )
    execution_mode: ExecutionMode | None = Field(
        default=None, description="sequential (default) or parallel operators."
    )
    graph_optimization: GraphOptimization | None = Field(
        default=None, description="Graph optimization level (default: all)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> RuntimeOptions:
        listed = self.execution_providers
        if listed is not None:
            unlisted = sorted(set(self.provider_options) - set(listed))
            if unlisted:
                raise ValueError(
                    f"provider_options names {', '.join(unlisted)}, which execution_providers "
                    f"does not list ({', '.join(listed)}): add it there or drop its options"
                )
        if (self.inter_op_threads or 1) > 1 and self.execution_mode != "parallel":
            raise ValueError(
                "inter_op_threads > 1 only takes effect when operators run in parallel: "
                'set execution_mode to "parallel" or drop inter_op_threads'
            )
        return self
