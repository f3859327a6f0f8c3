"""Model replicas: what runs inside a replica's Ray actor on a node.

A :class:`ReplicaServer` fetches the replica's ONNX models into the node's
content-addressed :class:`ModelCache` (sha256-verified, once per machine), loads them
in ONNX Runtime with explicitly chosen execution providers (TensorRT, CUDA, CPU), and
serves them over the Open Inference Protocol (KServe v2 gRPC) with ORCA-style load
reports; with a Redis in its settings it also pulls queued inferences from the async
broker (:class:`Puller`). The Ray side (:class:`ReplicaActor`, and the per-replica
driver run as ``python -m node_agent.replica``) wraps it; the agent's runtime starts
those.
"""

from astra.inference import DTYPES, TensorDataError, TensorSpec
from node_agent.replica._cache import ModelCache
from node_agent.replica._errors import ChecksumError, FetchError, ModelError, ModelLoadError
from node_agent.replica._fetch import HttpFetcher, LocalFetcher, ModelFetcher, default_fetchers
from node_agent.replica._load import LOAD_HEADER, WINDOW, LoadReport, LoadTracker
from node_agent.replica._model import PLATFORM, OnnxModel, Prepared
from node_agent.replica._orca import (
    ORCA_METHOD,
    ORCA_SERVICE,
    ORCA_TRAILER,
    OrcaLoadReport,
    OrcaLoadReportRequest,
    orca_handler,
    to_orca,
)
from node_agent.replica._protocol import (
    DRAIN,
    DRAINED,
    EXIT_FAILED,
    FAILED,
    READY,
    HostConfig,
)
from node_agent.replica._providers import (
    CPU,
    CUDA,
    GPU_PROVIDERS,
    TENSORRT,
    ProviderPlan,
    check_providers,
    plan_providers,
)
from node_agent.replica._puller import Puller
from node_agent.replica._server import DEFAULT_VERSION, ReplicaServer, Serving
from node_agent.replica._servicer import SERVER_NAME, Gate, InferenceFailed, InferenceServicer
from node_agent.replica._settings import ReplicaSettings

__all__ = [
    "CPU",
    "CUDA",
    "DEFAULT_VERSION",
    "DRAIN",
    "DRAINED",
    "DTYPES",
    "EXIT_FAILED",
    "FAILED",
    "GPU_PROVIDERS",
    "LOAD_HEADER",
    "ORCA_METHOD",
    "ORCA_SERVICE",
    "ORCA_TRAILER",
    "PLATFORM",
    "READY",
    "SERVER_NAME",
    "TENSORRT",
    "WINDOW",
    "ChecksumError",
    "FetchError",
    "Gate",
    "HostConfig",
    "HttpFetcher",
    "InferenceFailed",
    "InferenceServicer",
    "LoadReport",
    "LoadTracker",
    "LocalFetcher",
    "ModelCache",
    "ModelError",
    "ModelFetcher",
    "ModelLoadError",
    "OnnxModel",
    "OrcaLoadReport",
    "OrcaLoadReportRequest",
    "Prepared",
    "ProviderPlan",
    "Puller",
    "ReplicaServer",
    "ReplicaSettings",
    "Serving",
    "TensorDataError",
    "TensorSpec",
    "check_providers",
    "default_fetchers",
    "orca_handler",
    "plan_providers",
    "to_orca",
]
