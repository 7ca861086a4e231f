#!/usr/bin/env bash
# One self-hosted SGLang replica with the settings Longshot expects: an OpenAI-compatible /v1 on $PORT, GLM tool
# calls and reasoning parsed by the server, Prometheus /metrics, cached-token counts in `usage`, and an API key.
# Defaults: GLM-5 FP8 served as `glm-5` on 8 GPUs (B200 or H200), the settings of the Modal deployment
# (infra/modal/glm5_sglang.py). Run it where SGLang is installed, e.g. in lmsysorg/sglang:glm5-blackwell
# (glm5-hopper on H100/H200); infra/sglang/docker-compose.yml does that.
#
#   SGLANG_API_KEY=$(openssl rand -hex 32) infra/sglang/launch.sh [extra sglang.launch_server flags...]
#   LAUNCH_DRY_RUN=1 infra/sglang/launch.sh      # print the command (never the key) and exit
#
# Environment (all optional except the key): MODEL, SERVED_MODEL_NAME, TP, HOST, PORT, TOOL_CALL_PARSER,
# REASONING_PARSER, MEM_FRACTION_STATIC, CHUNKED_PREFILL_SIZE, KV_CACHE_DTYPE, MAX_RUNNING_REQUESTS, SPECULATIVE
# (eagle | off), PYTHON. Several replicas on one host: one GPU group each via CUDA_VISIBLE_DEVICES and one PORT each.
# The key goes into a 0600 config file (SGLang's --config), not onto the command line; without a key the script
# refuses to start unless SGLANG_ALLOW_OPEN=1 (then anyone who reaches the port can use the model).
set -euo pipefail

MODEL="${MODEL:-zai-org/GLM-5-FP8}"
SERVED_MODEL_NAME="${SERVED_MODEL_NAME:-glm-5}"
TP="${TP:-8}"
HOST="${HOST:-0.0.0.0}"
PORT="${PORT:-30000}"
TOOL_CALL_PARSER="${TOOL_CALL_PARSER:-glm47}"
REASONING_PARSER="${REASONING_PARSER:-glm45}"
MEM_FRACTION_STATIC="${MEM_FRACTION_STATIC:-0.80}"
CHUNKED_PREFILL_SIZE="${CHUNKED_PREFILL_SIZE:-16384}"
KV_CACHE_DTYPE="${KV_CACHE_DTYPE:-fp8_e4m3}"
MAX_RUNNING_REQUESTS="${MAX_RUNNING_REQUESTS:-24}"
SPECULATIVE="${SPECULATIVE:-eagle}"
PYTHON="${PYTHON:-python3}"
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"

die() {
  echo "launch.sh: $*" >&2
  exit 2
}

args=(
  -m sglang.launch_server
  --model-path "$MODEL"
  --served-model-name "$SERVED_MODEL_NAME"
  --tp-size "$TP"
  --host "$HOST"
  --port "$PORT"
  --trust-remote-code
  --tool-call-parser "$TOOL_CALL_PARSER"
  --reasoning-parser "$REASONING_PARSER"
  --enable-metrics
  --collect-tokens-histogram
  --enable-cache-report
  --mem-fraction-static "$MEM_FRACTION_STATIC"
  --chunked-prefill-size "$CHUNKED_PREFILL_SIZE"
  --kv-cache-dtype "$KV_CACHE_DTYPE"
  --max-running-requests "$MAX_RUNNING_REQUESTS"
  --cuda-graph-max-bs "$MAX_RUNNING_REQUESTS"
)
case "$SPECULATIVE" in
  eagle)
    args+=(--speculative-algorithm EAGLE --speculative-num-steps 3 --speculative-eagle-topk 1
      --speculative-num-draft-tokens 4)
    ;;
  off) ;;
  *) die "SPECULATIVE must be eagle or off, not '$SPECULATIVE'" ;;
esac

key="${SGLANG_API_KEY:-}"
unset SGLANG_API_KEY
config_dir=""
if [ -n "$key" ]; then
  [ "${#key}" -ge 16 ] || die "SGLANG_API_KEY is shorter than 16 characters"
  case "$key" in *[!A-Za-z0-9._~+/=-]*) die "SGLANG_API_KEY may only contain A-Z a-z 0-9 . _ ~ + / = -" ;; esac
  config_dir="$(mktemp -d)"
  trap 'rm -rf "$config_dir"' EXIT
  (umask 077 && printf 'api-key: "%s"\n' "$key" >"$config_dir/auth.yaml")
  args=(-m sglang.launch_server --config "$config_dir/auth.yaml" "${args[@]:2}")
elif [ "${SGLANG_ALLOW_OPEN:-0}" != 1 ]; then
  die "set SGLANG_API_KEY (e.g. \$(openssl rand -hex 32)), or SGLANG_ALLOW_OPEN=1 to serve without a key"
fi

if [ "${LAUNCH_DRY_RUN:-0}" = 1 ]; then
  printf '%q ' "$PYTHON" "${args[@]}" "$@"
  printf '\n'
  exit 0
fi

# Not exec: the shell stays to delete the key file when the server exits, and passes SIGTERM/SIGINT on to it.
"$PYTHON" "${args[@]}" "$@" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true' TERM INT
status=0
wait "$server" || status=$?
# A trapped signal interrupts the first wait; wait again for the server's own exit.
if kill -0 "$server" 2>/dev/null; then
  wait "$server" || status=$?
fi
exit "$status"
