#!/usr/bin/env bash
# shellcheck shell=bash
#
# local-model-helper.sh - the aidevops framework's entry point for the `local` model tier.
#
# Every subcommand hands its arguments, unchanged, to `aidevops-local` (the aidevops Local Models CLI),
# which installs llama.cpp, pulls GGUF models from Hugging Face, runs llama-server on 127.0.0.1, logs
# usage in SQLite and cleans up stale models. This script adds nothing but a stable name for the
# framework to call, a clear message when the tool is missing, and the exit codes below.
#
# Usage: local-model-helper.sh COMMAND [ARGS...]    (local-model-helper.sh help for the list)
#
# Exit codes (the same table as aidevops-local; see tools/local-models/local-models.md):
#   0 ok                 1 error               2 usage
#   3 server not running 4 not installed (aidevops-local itself, or its llama.cpp runtime)
#   5 not found          6 verification failed 7 network
#   8 server start failed 9 port in use       10 disk full
#  11 bad configuration  12 refused           13 database     130 cancelled
#
# Environment:
#   AIDEVOPS_LOCAL_BIN  path to the aidevops-local executable (default: the one on PATH)
#   AIDEVOPS_HOME       root of all local-model files (default: ~/.aidevops), read by aidevops-local
#
# Only shell builtins are used here, so the helper works with any PATH.

set -euo pipefail

readonly HELPER_NAME="local-model-helper.sh"
readonly TOOL_NAME="aidevops-local"

readonly EXIT_OK=0
readonly EXIT_USAGE=2
readonly EXIT_NOT_INSTALLED=4

print_error() {
	local message="$1"
	printf '%s: %s\n' "$HELPER_NAME" "$message" >&2
	return 0
}

# Copy standard input to standard output with builtins only (no cat), so any PATH works.
print_lines() {
	local line=""
	while IFS= read -r line || [[ -n "$line" ]]; do
		printf '%s\n' "$line"
	done
	return 0
}

# Print the aidevops-local executable to use; fail (quietly) when there is none.
find_tool() {
	local configured="${AIDEVOPS_LOCAL_BIN:-}"
	if [[ -n "$configured" ]]; then
		if [[ -f "$configured" && -x "$configured" ]]; then
			printf '%s\n' "$configured"
			return 0
		fi
		print_error "AIDEVOPS_LOCAL_BIN is set to '${configured}', which is not an executable file."
		return 1
	fi
	local found=""
	found="$(command -v "$TOOL_NAME" 2>/dev/null)" || return 1
	printf '%s\n' "$found"
	return 0
}

print_not_installed() {
	print_lines >&2 <<EOF
${HELPER_NAME}: ${TOOL_NAME} is not installed (it is not on PATH and AIDEVOPS_LOCAL_BIN is not set).
  The local model tier needs the aidevops Local Models CLI. Install it from its repository
  (python3 -m venv .venv && .venv/bin/pip install .), then put .venv/bin on PATH or
  export AIDEVOPS_LOCAL_BIN=/path/to/.venv/bin/${TOOL_NAME}
  Until then the local tier is unavailable: route cost-only work to haiku, and stop
  privacy-sensitive work rather than sending it to a cloud model.
EOF
	return 0
}

# Run aidevops-local with the given arguments and return its exit status.
run_tool() {
	local tool=""
	if ! tool="$(find_tool)"; then
		print_not_installed
		return "$EXIT_NOT_INSTALLED"
	fi
	local rc=0
	"$tool" "$@" || rc=$?
	return "$rc"
}

cmd_install() {
	run_tool install "$@"
	return $?
}

cmd_update() {
	run_tool update "$@"
	return $?
}

cmd_serve() {
	run_tool serve "$@"
	return $?
}

cmd_stop() {
	run_tool stop "$@"
	return $?
}

cmd_status() {
	run_tool status "$@"
	return $?
}

cmd_models() {
	run_tool models "$@"
	return $?
}

cmd_search() {
	run_tool search "$@"
	return $?
}

cmd_pull() {
	run_tool pull "$@"
	return $?
}

cmd_recommend() {
	run_tool recommend "$@"
	return $?
}

cmd_usage() {
	run_tool usage "$@"
	return $?
}

cmd_cleanup() {
	run_tool cleanup "$@"
	return $?
}

# The session-start reminder about stale models. Silent, and successful, where aidevops-local is not
# installed: a user who never set up local models should not hear about it at every session start.
cmd_nudge() {
	if ! find_tool >/dev/null 2>&1; then
		return "$EXIT_OK"
	fi
	run_tool nudge "$@"
	return $?
}

cmd_help() {
	print_lines <<EOF
${HELPER_NAME} - the aidevops framework's entry point for local models (llama.cpp + Hugging Face GGUF).
Every command hands its arguments to '${TOOL_NAME} COMMAND'; '${HELPER_NAME} COMMAND --help' shows its options.

Usage: ${HELPER_NAME} COMMAND [ARGS...]

Commands:
  install     install llama.cpp (llama-server) for this machine, sha256-verified  (alias: setup)
  update      check for, install, or roll back a llama.cpp release
  serve       start llama-server on 127.0.0.1 with a model                        (alias: start)
  stop        stop the server this tool started
  status      is the server running: endpoint, model, memory (exit 0 running, 3 not)
  models      list downloaded models; 'models rm NAME' removes one
  search      search Hugging Face for GGUF models
  pull        download a GGUF model: pull REPO[:QUANT] [--file NAME]            (alias: download)
  recommend   name models that fit this machine's memory
  usage       per-model requests and tokens from the usage database
  cleanup     find models unused for 30+ days and offer to remove them
  nudge       one-line reminder when stale models take space (silent if not installed)
  help        this text

Examples:
  ${HELPER_NAME} install
  ${HELPER_NAME} recommend
  ${HELPER_NAME} pull bartowski/Qwen2.5-Coder-7B-Instruct-GGUF:Q4_K_M
  ${HELPER_NAME} serve --port 8080
  ${HELPER_NAME} status --json        # model routing: endpoint, model, state
  ${HELPER_NAME} usage --since 7d
  ${HELPER_NAME} cleanup --dry-run

Exit codes (as ${TOOL_NAME}): 0 ok, 1 error, 2 usage, 3 server not running, 4 not installed
(${TOOL_NAME} or its llama.cpp runtime), 5 not found, 6 verification failed, 7 network, 8 server
start failed, 9 port in use, 10 disk full, 11 bad configuration, 12 refused, 13 database, 130 cancelled.

Environment: AIDEVOPS_LOCAL_BIN (path to ${TOOL_NAME}), AIDEVOPS_HOME (default ~/.aidevops).
Docs: tools/local-models/local-models.md, tools/local-models/huggingface.md, tools/context/model-routing.md
EOF
	return 0
}

main() {
	local command="${1:-help}"
	if [[ $# -gt 0 ]]; then
		shift
	fi
	case "$command" in
	install | setup) cmd_install "$@" ;;
	update) cmd_update "$@" ;;
	serve | start) cmd_serve "$@" ;;
	stop) cmd_stop "$@" ;;
	status) cmd_status "$@" ;;
	models) cmd_models "$@" ;;
	search) cmd_search "$@" ;;
	pull | download) cmd_pull "$@" ;;
	recommend) cmd_recommend "$@" ;;
	usage) cmd_usage "$@" ;;
	cleanup) cmd_cleanup "$@" ;;
	nudge) cmd_nudge "$@" ;;
	help | -h | --help) cmd_help ;;
	*)
		print_error "unknown command '${command}'. Run '${HELPER_NAME} help' for the list."
		return "$EXIT_USAGE"
		;;
	esac
	return $?
}

rc=0
main "$@" || rc=$?
exit "$rc"
