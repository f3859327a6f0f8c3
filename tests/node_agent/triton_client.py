"""A real Open Inference Protocol client for the tests: tritonclient, in a process of
its own (it registers the same ``inference.*`` protobuf symbols as our stubs).

    python triton_client.py check ENDPOINT MODEL   < {"input": [[...]]}
        prints {"live", "ready", "model_ready", "server", "inputs", "output"} as JSON
    python triton_client.py load ENDPOINT MODEL THREADS PAUSE   < {"input": ..., "expected": ...}\\n
        calls ModelInfer from THREADS threads, each pausing PAUSE seconds between calls,
        until stdin closes; prints "flowing" once 20 answers came back, then the count
        of each outcome (OK, WRONG for a wrong answer, or the status code) as JSON
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def infer(client: triton.InferenceServerClient, model: str, batch: np.ndarray) -> np.ndarray:
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return client.infer(model, [tensor], client_timeout=30).as_numpy("output")


def check(endpoint: str, model: str) -> None:
    batch = np.array(json.loads(sys.stdin.readline())["input"], dtype=np.float32)
    client = triton.InferenceServerClient(endpoint)
    metadata = client.get_model_metadata(model, as_json=True)
    print(
        json.dumps(
            {
                "live": client.is_server_live(),
                "ready": client.is_server_ready(),
                "model_ready": client.is_model_ready(model),
                "server": client.get_server_metadata(as_json=True)["name"],
                "inputs": [[tensor["name"], tensor["datatype"]] for tensor in metadata["inputs"]],
                "output": infer(client, model, batch).tolist(),
            }
        )
    )


def load(endpoint: str, model: str, threads: int, pause: float) -> None:
    job = json.loads(sys.stdin.readline())
    batch, expected = (
        np.array(job["input"], dtype=np.float32),
        np.array(job["expected"], dtype=np.float32),
    )
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    done = threading.Event()
    flowing = threading.Event()

    def run() -> None:
        client = triton.InferenceServerClient(endpoint)
        while not done.is_set():
            try:
                ok = np.allclose(infer(client, model, batch), expected, rtol=1e-4, atol=1e-5)
                outcome = "OK" if ok else "WRONG"
            except InferenceServerException as exc:
                outcome = str(exc.status()).removeprefix("StatusCode.")
            with lock:
                outcomes[outcome] += 1
                if outcomes["OK"] >= 20 and not flowing.is_set():
                    flowing.set()
                    print("flowing", flush=True)
            done.wait(pause)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    sys.stdin.read()  # until the test closes stdin
    done.set()
    for worker in workers:
        worker.join()
    print(json.dumps(outcomes), flush=True)


if __name__ == "__main__":
    mode, endpoint, model, *rest = sys.argv[1:]
    if mode == "check":
        check(endpoint, model)
    else:
        load(endpoint, model, int(rest[0]), float(rest[1]))
