"""GLM-5 served by SGLang on Modal: an OpenAI-compatible /v1 endpoint for the Longshot LLM gateway.

Model `zai-org/GLM-5-FP8` served as `glm-5`, tensor parallel 8 on 8×B200, image `lmsysorg/sglang:glm5-blackwell`,
GLM tool-call and reasoning parsers, Prometheus metrics. Every request except `/health*` and `/metrics` must carry
`Authorization: Bearer <GLM5_API_KEY>` (SGLang's `--api-key`), which is what the gateway sends for an upstream
with `apiKey` set. See infra/README.md for the whole flow.

One-time setup (from the repository root, with the `modal` CLI logged in):

    modal secret create glm5-api-key GLM5_API_KEY="$(openssl rand -hex 32)"
    modal run infra/modal/glm5_sglang.py::download_weights     # ~750 GB into the Volume, CPU only

Deploy, then point the gateway at the URL it prints (plus `/v1`):

    modal deploy infra/modal/glm5_sglang.py
    # -> https://<workspace>--longshot-glm5.modal.run

Smoke test (starts an ephemeral copy of the app, waits for it, sends one chat request; needs GLM5_API_KEY locally):

    GLM5_API_KEY=... modal run infra/modal/glm5_sglang.py

Settings are the constants below (edit and redeploy); they are read both where you deploy and in the container,
so they are not taken from your shell's environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import modal

# ---- settings ------------------------------------------------------------------------------------------------
APP_NAME = "longshot-glm5"
# The endpoint's label: its URL is https://<workspace>--<label>.modal.run (modal serve appends -dev).
ENDPOINT_LABEL = "longshot-glm5"

SGLANG_IMAGE = "lmsysorg/sglang:glm5-blackwell"
MODEL_REPO = "zai-org/GLM-5-FP8"
# A commit of MODEL_REPO for reproducible deploys; "" = the latest at download time.
MODEL_REVISION = ""
SERVED_MODEL_NAME = "glm-5"
GPU = "B200:8"
TENSOR_PARALLEL = 8
PORT = 8000

# SGLang settings of the original Longshot deployment (8×B200). EAGLE uses GLM-5's own multi-token-prediction
# layers as the draft model; no separate draft weights.
TOOL_CALL_PARSER = "glm47"
REASONING_PARSER = "glm45"
MEM_FRACTION_STATIC = 0.80
CHUNKED_PREFILL_SIZE = 16384
KV_CACHE_DTYPE = "fp8_e4m3"
MAX_RUNNING_REQUESTS = 24
SPECULATIVE = {"algorithm": "EAGLE", "num_steps": 3, "eagle_topk": 1, "num_draft_tokens": 4}
# Random weights of the right shapes: for testing the deployment without the 750 GB download.
USE_DUMMY_WEIGHTS = False

# Cost guard: one container = 8×B200. Requests beyond MAX_CONCURRENT_REQUESTS queue at Modal instead of starting
# another container; raise MAX_CONTAINERS for more replicas (the gateway then sees one URL, Modal balances).
MIN_CONTAINERS = 0
MAX_CONTAINERS = 1
MAX_CONCURRENT_REQUESTS = 256
SCALEDOWN_WINDOW_S = 20 * 60
STARTUP_TIMEOUT_S = 45 * 60  # weight loading + CUDA graph capture + JIT warmup
REQUEST_TIMEOUT_S = 60 * 60
# Modal proxy auth (Modal-Key / Modal-Secret headers) on top of the API key. It also stops strangers from waking
# a container, but the Longshot gateway cannot send those headers yet, so it is off.
REQUIRE_PROXY_AUTH = False

API_KEY_SECRET = "glm5-api-key"
API_KEY_ENV = "GLM5_API_KEY"
MIN_API_KEY_LENGTH = 32

HF_HOME = "/root/.cache/huggingface"
JIT_CACHE = "/root/.cache/longshot-jit"
MINUTES = 60

# ---- Modal objects ---------------------------------------------------------------------------------------------
app = modal.App(APP_NAME)

weights_volume = modal.Volume.from_name("longshot-glm5-weights", create_if_missing=True)
jit_volume = modal.Volume.from_name("longshot-glm5-jit-cache", create_if_missing=True)
api_key_secret = modal.Secret.from_name(API_KEY_SECRET, required_keys=[API_KEY_ENV])

sglang_image = (
    modal.Image.from_registry(SGLANG_IMAGE)
    .entrypoint([])  # the image's entrypoint only adds log noise
    .env({"HF_HOME": HF_HOME, "HF_XET_HIGH_PERFORMANCE": "1"})
)
download_image = (
    modal.Image.debian_slim(python_version="3.12")
    .uv_pip_install("huggingface_hub[hf_xet]>=0.34")
    .env({"HF_HOME": HF_HOME, "HF_XET_HIGH_PERFORMANCE": "1"})
)


# ---- the SGLang command (plain functions: infra/test checks them without Modal) -----------------------------------
def sglang_command(config_path: str, dummy_weights: bool = USE_DUMMY_WEIGHTS) -> list[str]:
    """argv of the SGLang server. `config_path` is a YAML file holding `api-key` (kept off the command line)."""
    cmd = [
        "python3",
        "-m",
        "sglang.launch_server",
        "--config",
        config_path,
        "--model-path",
        MODEL_REPO,
        "--served-model-name",
        SERVED_MODEL_NAME,
        "--tp-size",
        str(TENSOR_PARALLEL),
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--trust-remote-code",
        "--tool-call-parser",
        TOOL_CALL_PARSER,
        "--reasoning-parser",
        REASONING_PARSER,
        "--enable-metrics",
        "--collect-tokens-histogram",
        "--enable-cache-report",
        "--mem-fraction-static",
        str(MEM_FRACTION_STATIC),
        "--chunked-prefill-size",
        str(CHUNKED_PREFILL_SIZE),
        "--kv-cache-dtype",
        KV_CACHE_DTYPE,
        "--max-running-requests",
        str(MAX_RUNNING_REQUESTS),
        "--cuda-graph-max-bs",
        str(MAX_RUNNING_REQUESTS),
        "--speculative-algorithm",
        str(SPECULATIVE["algorithm"]),
        "--speculative-num-steps",
        str(SPECULATIVE["num_steps"]),
        "--speculative-eagle-topk",
        str(SPECULATIVE["eagle_topk"]),
        "--speculative-num-draft-tokens",
        str(SPECULATIVE["num_draft_tokens"]),
        "--disable-custom-all-reduce",
        "--dist-timeout",
        "3600",
        "--log-level",
        "info",
    ]
    if MODEL_REVISION:
        cmd += ["--revision", MODEL_REVISION]
    if dummy_weights:
        cmd += ["--load-format", "dummy"]
    return cmd


def server_env(dummy_weights: bool = USE_DUMMY_WEIGHTS) -> dict[str, str]:
    """Environment of the SGLang process: the container's, minus the API key, plus cache locations."""
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    env.update(
        {
            # From the original deployment's environment.
            "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN": "1",
            "SGLANG_JIT_DEEPGEMM_FAST_WARMUP": "1",
            "SGLANG_NSA_FORCE_MLA": "1",
            "SGLANG_LOCAL_IP_NIC": "overlay0",
            "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
            # JIT kernels survive container restarts in the jit Volume (shorter cold starts).
            "DG_JIT_CACHE_DIR": f"{JIT_CACHE}/deep_gemm",
            "SGLANG_DG_CACHE_DIR": f"{JIT_CACHE}/deep_gemm",
            "FLASHINFER_WORKSPACE_BASE": f"{JIT_CACHE}/flashinfer",
            "TRITON_CACHE_DIR": f"{JIT_CACHE}/triton",
            "TORCHINDUCTOR_CACHE_DIR": f"{JIT_CACHE}/inductor",
        }
    )
    if not dummy_weights:
        env["HF_HUB_OFFLINE"] = "1"  # weights come from the Volume only; a missing file fails fast
    return env


def write_api_key_config(api_key: str, path: str = "/tmp/sglang-auth.yaml") -> str:
    """Writes the SGLang config file holding the API key (mode 0600) and returns its path."""
    if len(api_key) < MIN_API_KEY_LENGTH:
        raise RuntimeError(
            f"secret {API_KEY_SECRET!r} must hold {API_KEY_ENV} with at least {MIN_API_KEY_LENGTH} characters "
            f"(e.g. `openssl rand -hex 32`); the endpoint is not started without it"
        )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"api-key: {json.dumps(api_key)}\n")  # a JSON string is a valid YAML scalar
    return path


# ---- functions -------------------------------------------------------------------------------------------------
@app.function(
    image=download_image,
    volumes={HF_HOME: weights_volume},
    timeout=6 * 60 * MINUTES,
    cpu=8,
    memory=16 * 1024,
)
def download_weights(revision: str = MODEL_REVISION) -> str:
    """Downloads the model into the weights Volume (idempotent: files already there are skipped)."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(MODEL_REPO, revision=revision or None)
    weights_volume.commit()
    print(f"{MODEL_REPO} is in the Volume at {path}")
    return path


@app.function(
    image=sglang_image,
    gpu=GPU,
    volumes={HF_HOME: weights_volume, JIT_CACHE: jit_volume},
    secrets=[api_key_secret],
    timeout=REQUEST_TIMEOUT_S,
    scaledown_window=SCALEDOWN_WINDOW_S,
    min_containers=MIN_CONTAINERS,
    max_containers=MAX_CONTAINERS,
)
@modal.concurrent(max_inputs=MAX_CONCURRENT_REQUESTS)
@modal.web_server(
    port=PORT,
    startup_timeout=STARTUP_TIMEOUT_S,
    label=ENDPOINT_LABEL,
    requires_proxy_auth=REQUIRE_PROXY_AUTH,
)
def serve() -> None:
    """Starts SGLang; Modal routes the endpoint's requests to PORT once it accepts connections."""
    config_path = write_api_key_config(os.environ.get(API_KEY_ENV, ""))
    for sub in ("deep_gemm", "flashinfer", "triton", "inductor"):
        os.makedirs(f"{JIT_CACHE}/{sub}", exist_ok=True)
    subprocess.Popen(sglang_command(config_path), env=server_env())


# ---- smoke test: `modal run infra/modal/glm5_sglang.py` -----------------------------------------------------------
def _request(url: str, api_key: str, body: dict | None = None, timeout: float = 30) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Authorization", f"Bearer {api_key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        return 0, str(e)


@app.local_entrypoint()
def main(prompt: str = "Reply with the single word: ready", wait_minutes: int = 60) -> None:
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        raise SystemExit(f"set {API_KEY_ENV} to the value stored in the Modal secret {API_KEY_SECRET!r}")
    base = serve.get_web_url().rstrip("/")
    print(f"endpoint: {base}/v1 (model {SERVED_MODEL_NAME}); waiting for /health (cold start takes minutes)")
    deadline = time.monotonic() + wait_minutes * 60
    while True:
        status, text = _request(f"{base}/health", api_key, timeout=60)
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"not healthy after {wait_minutes} min: {status} {text[:200]}")
        time.sleep(15)
    status, text = _request(f"{base}/v1/models", "wrong-key")
    print(f"/v1/models with a wrong key -> {status} (expected 401)")
    body = {
        "model": SERVED_MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 256,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    status, text = _request(f"{base}/v1/chat/completions", api_key, body, timeout=140)
    if status != 200:
        raise SystemExit(f"chat completion failed: {status} {text[:500]}")
    answer = json.loads(text)
    print("answer:", answer["choices"][0]["message"].get("content"))
    print("usage:", json.dumps(answer.get("usage")))
