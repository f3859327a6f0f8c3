import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from astra._gen.inference import grpc_predict_v2_pb2 as _grpc_predict_v2_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InferenceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INFERENCE_STATE_UNSPECIFIED: _ClassVar[InferenceState]
    INFERENCE_STATE_QUEUED: _ClassVar[InferenceState]
    INFERENCE_STATE_RUNNING: _ClassVar[InferenceState]
    INFERENCE_STATE_SUCCEEDED: _ClassVar[InferenceState]
    INFERENCE_STATE_FAILED: _ClassVar[InferenceState]
INFERENCE_STATE_UNSPECIFIED: InferenceState
INFERENCE_STATE_QUEUED: InferenceState
INFERENCE_STATE_RUNNING: InferenceState
INFERENCE_STATE_SUCCEEDED: InferenceState
INFERENCE_STATE_FAILED: InferenceState

class InferenceError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Inference(_message.Message):
    __slots__ = ("inference_id", "model", "version", "state", "response", "error", "attempts", "replica", "submit_time", "start_time", "finish_time", "expire_time")
    INFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    inference_id: str
    model: str
    version: str
    state: InferenceState
    response: _grpc_predict_v2_pb2.ModelInferResponse
    error: InferenceError
    attempts: int
    replica: str
    submit_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    finish_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, inference_id: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[InferenceState, str]] = ..., response: _Optional[_Union[_grpc_predict_v2_pb2.ModelInferResponse, _Mapping]] = ..., error: _Optional[_Union[InferenceError, _Mapping]] = ..., attempts: _Optional[int] = ..., replica: _Optional[str] = ..., submit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitInferenceRequest(_message.Message):
    __slots__ = ("request", "inference_id")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    request: _grpc_predict_v2_pb2.ModelInferRequest
    inference_id: str
    def __init__(self, request: _Optional[_Union[_grpc_predict_v2_pb2.ModelInferRequest, _Mapping]] = ..., inference_id: _Optional[str] = ...) -> None: ...

class SubmitInferenceResponse(_message.Message):
    __slots__ = ("inference",)
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    inference: Inference
    def __init__(self, inference: _Optional[_Union[Inference, _Mapping]] = ...) -> None: ...

class GetInferenceResultRequest(_message.Message):
    __slots__ = ("inference_id", "wait")
    INFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    inference_id: str
    wait: _duration_pb2.Duration
    def __init__(self, inference_id: _Optional[str] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetInferenceResultResponse(_message.Message):
    __slots__ = ("inference",)
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    inference: Inference
    def __init__(self, inference: _Optional[_Union[Inference, _Mapping]] = ...) -> None: ...

class WatchInferenceResultRequest(_message.Message):
    __slots__ = ("inference_id",)
    INFERENCE_ID_FIELD_NUMBER: _ClassVar[int]
    inference_id: str
    def __init__(self, inference_id: _Optional[str] = ...) -> None: ...

class WatchInferenceResultResponse(_message.Message):
    __slots__ = ("inference",)
    INFERENCE_FIELD_NUMBER: _ClassVar[int]
    inference: Inference
    def __init__(self, inference: _Optional[_Union[Inference, _Mapping]] = ...) -> None: ...
