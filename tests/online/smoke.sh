#!/usr/bin/env bash
# Smoke test against the real GitHub and Hugging Face Hub (run by .github/workflows/ci.yml on Linux and macOS;
# not part of tests/run.sh; tests/test_smoke_offline.py runs it --offline). On the machine it runs on: install the latest llama.cpp release for this platform's
# backend (sha256-verified), search and pull a small real model, serve it, one chat through the OpenAI client,
# usage shows the request, stop, then update --check. Each step prints one line with its time.
#
#   tests/online/smoke.sh              # the real services (AIDEVOPS_LLAMA_RELEASES_URL and HF_ENDPOINT unset)
#   tests/online/smoke.sh --offline    # local stand-ins: both variables must point at 127.0.0.1 or localhost
#
# Environment:
#   PYTHON         the interpreter that has aidevops-local and the openai package (default: .venv/bin/python
#                  when present, else python3)
#   SMOKE_MODEL    REPO:QUANT to pull (default bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M, 105 MB)
#   SMOKE_QUERY    what to search for (default SmolLM2-135M-Instruct); the search must list SMOKE_MODEL's repo
#   SMOKE_PORT     the port to serve on (default: one the kernel says is free)
#   AIDEVOPS_HOME  where everything goes (default: a fresh temporary folder, removed afterwards)
# Exit status: 0 every step passed, 1 a step failed (its line says which and why), 2 bad usage.
# Works with macOS's bash 3.2: no associative arrays, no EPOCHREALTIME.
set -euo pipefail

readonly DEFAULT_MODEL="bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M"
readonly DEFAULT_QUERY="SmolLM2-135M-Instruct"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

offline=0
while [[ $# -gt 0 ]]; do
	case "$1" in
	--offline) offline=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "smoke: unknown argument '$1'; run it with --help for the options" >&2
		exit 2
		;;
	esac
	shift
done

cd "$(dirname "$0")/../.."
if [[ -z "${PYTHON:-}" ]]; then
	if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
model="${SMOKE_MODEL:-$DEFAULT_MODEL}"
query="${SMOKE_QUERY:-$DEFAULT_QUERY}"
repo="${model%%:*}"

# Loopback only, with nothing that could name another host (user info: http://127.0.0.1:1@example.org).
is_loopback_url() {
	[[ "$1" =~ ^http://(127\.0\.0\.1|localhost)(:[0-9]+)?(/[^@]*)?$ ]]
}

if [[ $offline -eq 1 ]]; then
	# Offline must never reach the real services by mistake: both stand-ins have to be named, on loopback.
	for name in AIDEVOPS_LLAMA_RELEASES_URL HF_ENDPOINT; do
		value="${!name:-}"
		if ! is_loopback_url "$value"; then
			echo "smoke: --offline needs $name pointing at a local stand-in (http://127.0.0.1:PORT...), got '${value}'" >&2
			exit 2
		fi
	done
else
	unset AIDEVOPS_LLAMA_RELEASES_URL HF_ENDPOINT
fi
export HF_HUB_DISABLE_TELEMETRY=1
# The CLI's messages wrap at the terminal's width (80 columns when it has none): one line each, for the checks
# below and for a failure's reason.
export COLUMNS=1000

work="$(mktemp -d)"
if [[ -z "${AIDEVOPS_HOME:-}" ]]; then
	export AIDEVOPS_HOME="$work/home"
fi
served=0

cli() { "$PYTHON" -m aidevops_local "$@"; }

finish() {
	# A failed step must not leave a server behind.
	if [[ $served -eq 1 ]]; then cli stop >/dev/null 2>&1 || true; fi
	rm -rf "${work:?}"  # with the home in it, when the home is ours
}
trap finish EXIT

now() { "$PYTHON" -c 'import time; print(f"{time.time():.3f}")'; }
elapsed() { "$PYTHON" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# reason ERR_FILE: why a command failed, on one line: its error and hint lines, else its last line.
reason() {
	local text
	text="$(sed -n '/^error:/,$p' "$1" | tr -s '\n' ' ')"
	[[ -n "$text" ]] || text="$(tail -n 1 "$1")"
	echo "${text% }"
}

# step NAME CHECK COMMAND...: runs COMMAND (stdout and stderr kept in $work/NAME.out and .err), then CHECK
# (a function that reads them and prints the step's detail, or fails). One line either way.
step() {
	local name="$1" check="$2" started rc=0 detail
	shift 2
	started="$(now)"
	"$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
	if [[ $rc -ne 0 ]]; then
		echo "smoke: $name FAILED (exit $rc) after $(elapsed "$started" "$(now)") s: $(reason "$work/$name.err")"
		exit 1
	fi
	if ! detail="$("$check" "$work/$name.out" "$work/$name.err" 2>&1)"; then
		echo "smoke: $name FAILED after $(elapsed "$started" "$(now)") s: $detail"
		exit 1
	fi
	echo "smoke: $name ok in $(elapsed "$started" "$(now)") s: $detail"
}

check_install() { grep -m 1 '^Installed llama.cpp' "$1" || { echo "no 'Installed llama.cpp' line"; return 1; }; }
check_search() {
	if ! grep -q "\"$repo\"" "$1"; then
		echo "$repo is not in the results for '$query'"
		return 1
	fi
	echo "$repo is listed"
}
check_pull() {
	tr -s '\n ' '  ' <"$2" | grep -q 'sha256 verified' || { echo "no 'sha256 verified' line"; return 1; }
	tail -n 1 "$1"
}
check_serve() { tail -n 1 "$1"; }
check_chat() { cat "$1"; }
check_usage() {
	"$PYTHON" - "$1" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
requests = report["total"]["requests"]
if requests < 1:
    sys.exit("usage recorded no request")
print(f"{requests} request(s), {report['total']['tokens_out']} tokens out")
EOF
}
check_stopped() {
	local rc=0
	cli status >/dev/null 2>&1 || rc=$?
	if [[ $rc -ne 3 ]]; then
		echo "status exits $rc, not 3 (stopped)"
		return 1
	fi
	echo "stopped (status exits 3)"
}
check_update() { head -n 1 "$1"; }

chat() {
	# One chat through the OpenAI client, naming the model the server says it serves.
	"$PYTHON" - "$1" <<'EOF'
import json, subprocess, sys
import openai

status = json.loads(subprocess.run([sys.executable, "-m", "aidevops_local", "status", "--json"],
                                   capture_output=True, text=True, check=True).stdout)
client = openai.OpenAI(base_url=sys.argv[1], api_key="no-key-needed", timeout=120)
reply = client.chat.completions.create(model=status["model"], max_tokens=16,
                                       messages=[{"role": "user", "content": "Say hello."}])
if not reply.usage or reply.usage.completion_tokens < 1:
    sys.exit("the reply carries no generated tokens")
print(f"{status['model']}: {reply.usage.completion_tokens} tokens: {reply.choices[0].message.content!r}")
EOF
}

if [[ -z "${SMOKE_PORT:-}" ]]; then
	SMOKE_PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi

mode="the real GitHub and Hugging Face Hub"
[[ $offline -eq 1 ]] && mode="local stand-ins ($AIDEVOPS_LLAMA_RELEASES_URL, $HF_ENDPOINT)"
echo "smoke: $(uname -sm), $("$PYTHON" -m aidevops_local --version), against $mode"
all_started="$(now)"

step install check_install cli install
step search check_search cli search "$query" --limit 50 --json
step pull check_pull cli pull "$model"
model_path="$(tail -n 1 "$work/pull.out")"
served=1
step serve check_serve cli serve "$model_path" --port "$SMOKE_PORT"
endpoint="$(tail -n 1 "$work/serve.out")"
step chat check_chat chat "$endpoint"
step usage check_usage cli usage --json
step stop check_stopped cli stop
served=0
step update-check check_update cli update --check

echo "smoke: all 8 steps passed in $(elapsed "$all_started" "$(now)") s"
