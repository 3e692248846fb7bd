#!/usr/bin/env bash
# shellcheck shell=bash
#
# local-model-helper.sh - the aidevops framework's entry point for the `local` model tier.
#
# Every subcommand hands its arguments, unchanged, to `aidevops-local` (the aidevops Local Models CLI),
# which installs llama.cpp, pulls GGUF models from Hugging Face, runs llama-server on 127.0.0.1, logs
# usage in SQLite and cleans up stale models. Where SQLite alone can answer, the helper answers itself,
# without starting Python:
#   nudge              at every agent session start: silent unless stale models take space (sqlite3 only;
#                      it hands over only when the answer needs the tool's checks)
#   usage, cleanup --dry-run
#                      summaries from the database when aidevops-local is not installed
# The usage database is created on first use with the tool's own schema (schema_sql below is the text of
# the tool's fresh_schema(); a test keeps them equal).
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
#   AIDEVOPS_HOME       root of all local-model files (default: ~/.aidevops)
#
# Besides shell builtins the helper uses only sqlite3 and mkdir, and only for the database paths above.

set -euo pipefail

readonly HELPER_NAME="local-model-helper.sh"
readonly TOOL_NAME="aidevops-local"

readonly EXIT_OK=0
readonly EXIT_USAGE=2
readonly EXIT_NOT_INSTALLED=4
readonly EXIT_DATABASE=13

# Stale means unused for 30+ days (the seed's cutoff: datetime('now', '-30 days')) unless config.toml's
# stale_days says otherwise; the nudge speaks above stale_nudge_gb (default 5 GiB), at most once a day.
readonly DEFAULT_STALE_DAYS=30
readonly DEFAULT_CUTOFF="-30 days"
readonly DEFAULT_NUDGE_GB="5.0"
readonly GIB=1073741824
readonly NUDGE_KEY="last_nudge"
# Set by decide_nudge when the helper cannot answer alone and aidevops-local should.
NUDGE_UNDECIDED=0

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

cmd_inventory() {
	run_tool inventory "$@"
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

cmd_benchmark() {
	run_tool benchmark "$@"
	return $?
}

# ---- the usage database, read with sqlite3 -----------------------------------------------------------

database_path() {
	local home="${AIDEVOPS_HOME:-${HOME}/.aidevops}"
	printf '%s\n' "${home}/.agent-workspace/memory/local-models.db"
	return 0
}

have_sqlite() {
	command -v sqlite3 >/dev/null 2>&1
	return $?
}

# Run SQL against the database: tab-separated rows, no header, a 2 s wait while another process writes.
run_sql() {
	local db="$1"
	local sql="$2"
	sqlite3 -batch -bail -noheader -separator $'\t' -cmd ".timeout 2000" "$db" "$sql"
	return $?
}

# The schema, exactly as aidevops-local's fresh_schema() (database/migrations.py) writes it.
schema_sql() {
	print_lines <<'SQL'
CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL);
CREATE TABLE model_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    timestamp TEXT NOT NULL DEFAULT (datetime('now')),
    tokens_in INTEGER DEFAULT 0,
    tokens_out INTEGER DEFAULT 0,
    duration_ms INTEGER DEFAULT 0,
    session_id TEXT,
    request_key TEXT UNIQUE,
    tok_per_sec REAL,
    cache_tokens INTEGER DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'ok'
);
CREATE INDEX IF NOT EXISTS model_usage_model_timestamp ON model_usage (model, timestamp);
CREATE INDEX IF NOT EXISTS model_usage_timestamp ON model_usage (timestamp);
CREATE TABLE model_inventory (
    model TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    size_bytes INTEGER,
    downloaded TEXT DEFAULT (datetime('now')),
    last_used TEXT,
    repo TEXT,
    quant TEXT,
    sha256 TEXT,
    files TEXT,
    source TEXT NOT NULL DEFAULT 'external',
    total_requests INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS usage_log_cursor (
        file TEXT PRIMARY KEY,
        session_id TEXT,
        offset INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT '{}',
        updated TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS app_state (
        key TEXT PRIMARY KEY,
        value TEXT,
        updated TEXT NOT NULL DEFAULT (datetime('now')));
CREATE TABLE IF NOT EXISTS model_measurements (
        file TEXT NOT NULL, size_bytes INTEGER NOT NULL DEFAULT 0, machine TEXT NOT NULL, backend TEXT NOT NULL,
        ctx_size INTEGER NOT NULL DEFAULT 0, parallel INTEGER NOT NULL DEFAULT 0,
        gpu_layers INTEGER NOT NULL DEFAULT -1, threads INTEGER NOT NULL DEFAULT 0,
        model TEXT NOT NULL, sha256 TEXT, architecture TEXT, active_bytes INTEGER, machine_desc TEXT,
        gen_tokens REAL NOT NULL DEFAULT 0, gen_ms REAL NOT NULL DEFAULT 0,
        prompt_tokens REAL NOT NULL DEFAULT 0, prompt_ms REAL NOT NULL DEFAULT 0,
        tok_per_sec REAL, prompt_tok_per_sec REAL, estimated_tok_per_sec REAL, estimated_prompt_tok_per_sec REAL,
        peak_rss_bytes INTEGER, peak_vram_bytes INTEGER, requests INTEGER NOT NULL DEFAULT 0,
        updated TEXT NOT NULL DEFAULT (datetime('now')),
        PRIMARY KEY (file, size_bytes, machine, backend, ctx_size, parallel, gpu_layers, threads));
INSERT INTO schema_migrations (name, applied) VALUES
    ('m001_seed_tables', datetime('now')),
    ('m002_usage_request_columns', datetime('now')),
    ('m003_usage_indexes', datetime('now')),
    ('m004_inventory_details', datetime('now')),
    ('m005_log_cursors', datetime('now')),
    ('m006_app_state', datetime('now')),
    ('m007_model_measurements', datetime('now'));
SQL
	return 0
}

# Create the database with the schema on first use. Another process creating it at the same moment makes
# the CREATE fail inside the transaction, which then rolls back: theirs stands, and is the same.
ensure_database() {
	local db="$1"
	if [[ -f "$db" ]]; then
		return 0
	fi
	mkdir -p "${db%/*}" || return "$EXIT_DATABASE"
	local script=""
	script="PRAGMA journal_mode=WAL; BEGIN IMMEDIATE; $(schema_sql) COMMIT;"
	run_sql "$db" "$script" >/dev/null 2>&1 || [[ -f "$db" ]] || return "$EXIT_DATABASE"
	return 0
}

# A database at this tool's schema (an older helper's needs aidevops-local to adopt it first).
is_our_schema() {
	local db="$1"
	local found=""
	found="$(run_sql "$db" "SELECT count(*) FROM schema_migrations WHERE name = 'm004_inventory_details'" 2>/dev/null)" ||
		return 1
	[[ "$found" == "1" ]]
	return $?
}

# A setting from config.toml (flat keys, as aidevops-local writes them), when it matches the pattern.
read_setting() {
	local key="$1"
	local pattern="$2"
	local fallback="$3"
	local file="${AIDEVOPS_HOME:-${HOME}/.aidevops}/local-models/config.toml"
	local line="" value=""
	if [[ -f "$file" ]]; then
		while IFS= read -r line || [[ -n "$line" ]]; do
			if [[ "$line" =~ ^[[:space:]]*${key}[[:space:]]*=[[:space:]]*([^[:space:]#]+) ]]; then
				value="${BASH_REMATCH[1]}"
			fi
		done <"$file"
	fi
	if [[ -n "$value" && ! "$value" =~ $pattern ]]; then
		return 1
	fi
	printf '%s\n' "${value:-$fallback}"
	return 0
}

# SQLite's modifier for the stale cutoff: "-30 days" unless the setting says otherwise.
stale_cutoff() {
	local days="$1"
	if [[ "$days" == "$DEFAULT_STALE_DAYS" ]]; then
		printf '%s\n' "$DEFAULT_CUTOFF"
	else
		printf '%s\n' "-${days} days"
	fi
	return 0
}

# Models this tool downloaded that nobody used since the cutoff: model, size, last active, path.
stale_models_sql() {
	local cutoff="$1"
	printf '%s\n' "SELECT model, COALESCE(size_bytes, -1), COALESCE(last_used, downloaded, ''), path
		FROM model_inventory WHERE source = 'pulled' AND path LIKE '/%'
		AND (COALESCE(last_used, downloaded) IS NULL OR COALESCE(last_used, downloaded) < datetime('now', '${cutoff}'))
		ORDER BY COALESCE(last_used, downloaded)"
	return 0
}

# ---- nudge: the session-start path -------------------------------------------------------------------

# Answer the nudge from the database alone. Prints the line (or JSON) and returns 0 when it can; sets
# NUDGE_UNDECIDED=1 when only aidevops-local can say (no sqlite3, settings it must check, or a nudge due
# that its own checks must confirm: it reads the server's log into last use first, and knows what is served).
decide_nudge() {
	local json="$1"
	local db=""
	db="$(database_path)"
	if [[ ! -f "$db" ]]; then
		print_no_nudge "$json" # no database: nothing was ever pulled
		return 0
	fi
	local days="" gb=""
	# A database of an older helper (no schema_migrations, other columns) fails the query below: undecided.
	if ! have_sqlite || ! days="$(read_setting stale_days '^[0-9]+$' "$DEFAULT_STALE_DAYS")" ||
		! gb="$(read_setting stale_nudge_gb '^[0-9]+(\.[0-9]+)?$' "$DEFAULT_NUDGE_GB")"; then
		NUDGE_UNDECIDED=1
		return 0
	fi
	local rows=""
	rows="$(run_sql "$db" "SELECT 'threshold', CAST(${gb} * ${GIB} AS INTEGER), EXISTS (SELECT 1 FROM app_state
		WHERE key = '${NUDGE_KEY}' AND value <= datetime('now') AND value > datetime('now', '-1 day'));
		$(stale_models_sql "$(stale_cutoff "$days")")" 2>/dev/null)" || {
		NUDGE_UNDECIDED=1
		return 0
	}
	local kind="" size="" last="" path="" threshold=0 nudged=0 count=0 total=0 unknown=0
	while IFS=$'\t' read -r kind size last path; do
		if [[ "$kind" == "threshold" ]]; then
			threshold="$size"
			nudged="$last"
		elif [[ -f "$path" ]]; then
			count=$((count + 1))
			if [[ "$size" -lt 0 ]]; then
				unknown=1
			else
				total=$((total + size))
			fi
		fi
	done <<<"$rows"
	if [[ "$nudged" == "1" || ("$unknown" == "0" && "$total" -le "$threshold") ]]; then
		print_no_nudge "$json"
		return 0
	fi
	if [[ "$unknown" == "1" ]] || find_tool >/dev/null 2>&1; then
		NUDGE_UNDECIDED=1
		return 0
	fi
	run_sql "$db" "INSERT INTO app_state (key, value, updated) VALUES ('${NUDGE_KEY}', datetime('now'), datetime('now'))
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated" >/dev/null || true
	print_nudge "$json" "$count" "$total" "$threshold" "$days"
	return 0
}

print_no_nudge() {
	local json="$1"
	if [[ "$json" == "1" ]]; then
		printf 'null\n'
	fi
	return 0
}

# The same line, and the same JSON, as `aidevops-local nudge`.
print_nudge() {
	local json="$1"
	local count="$2"
	local total="$3"
	local threshold="$4"
	local days="$5"
	local tenths=$(((total * 10 + GIB / 2) / GIB))
	local plural="s"
	if [[ "$count" == "1" ]]; then
		plural=""
	fi
	local message="${count} local model${plural} unused for ${days}+ days take $((tenths / 10)).$((tenths % 10)) GB: run \`${TOOL_NAME} cleanup\` to review and remove them."
	if [[ "$json" == "1" ]]; then
		printf '{\n  "message": "%s",\n  "stale_models": %s,\n  "stale_bytes": %s,\n  "threshold_bytes": %s\n}\n' \
			"$message" "$count" "$total" "$threshold"
	else
		printf '%s\n' "$message"
	fi
	return 0
}

# The session-start reminder about stale models: silent (and successful) when there is nothing to say,
# when nothing was ever set up, and when aidevops-local is missing and the database cannot answer.
cmd_nudge() {
	local json=0
	local arg=""
	for arg in "$@"; do
		case "$arg" in
		--json) json=1 ;;
		*)
			run_tool nudge "$@"
			return $?
			;;
		esac
	done
	decide_nudge "$json"
	if [[ "$NUDGE_UNDECIDED" == "0" ]]; then
		return "$EXIT_OK"
	fi
	if ! find_tool >/dev/null 2>&1; then
		print_no_nudge "$json"
		return "$EXIT_OK"
	fi
	run_tool nudge "$@"
	return $?
}

# ---- usage and cleanup --dry-run without aidevops-local -----------------------------------------------

# --since as the framework wrote it (2026-11-01, a date and time) or as ours (30m, 24h, 7d, 2w): an SQLite
# time value and modifier.
since_modifier() {
	local since="$1"
	if [[ "$since" =~ ^([0-9]+)([mhdw])$ ]]; then
		local amount="${BASH_REMATCH[1]}"
		case "${BASH_REMATCH[2]}" in
		m) printf "'now', '-%s minutes'\n" "$amount" ;;
		h) printf "'now', '-%s hours'\n" "$amount" ;;
		d) printf "'now', '-%s days'\n" "$amount" ;;
		w) printf "'now', '-%s days'\n" "$((amount * 7))" ;;
		esac
		return 0
	fi
	if [[ "$since" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}([T\ ][0-9]{2}:[0-9]{2}(:[0-9]{2})?)?$ ]]; then
		printf "'%s', 'utc'\n" "$since"
		return 0
	fi
	return 1
}

# Per-model requests and tokens straight from the database.
usage_summary() {
	local json=0 since=""
	while [[ $# -gt 0 ]]; do
		case "$1" in
		--json) json=1 ;;
		--since)
			[[ $# -ge 2 ]] || return "$EXIT_USAGE"
			since="$2"
			shift
			;;
		--since=*) since="${1#--since=}" ;;
		*)
			print_not_installed
			print_error "without ${TOOL_NAME}, usage takes only --since and --json."
			return "$EXIT_NOT_INSTALLED"
			;;
		esac
		shift
	done
	local where="1"
	if [[ -n "$since" ]]; then
		local modifier=""
		if ! modifier="$(since_modifier "$since")"; then
			print_error "--since '${since}' is neither a date (2026-11-01) nor a period (30m, 24h, 7d, 2w)."
			return "$EXIT_USAGE"
		fi
		where="timestamp >= datetime(${modifier})"
	fi
	local select="SELECT model, count(*) AS requests, COALESCE(sum(tokens_in), 0) AS tokens_in,
		COALESCE(sum(tokens_out), 0) AS tokens_out, max(timestamp) AS last_used
		FROM model_usage WHERE ${where} GROUP BY model ORDER BY requests DESC, model"
	run_summary "$json" "$select" $'model\trequests\ttokens in\ttokens out\tlast used' \
		"'model', model, 'requests', requests, 'tokens_in', tokens_in, 'tokens_out', tokens_out, 'last_used', last_used"
	return $?
}

# Stale models (the nudge's query) with their sizes.
cleanup_summary() {
	local json=0 arg="" days="" dry_run=0
	for arg in "$@"; do
		case "$arg" in
		--dry-run) dry_run=1 ;;
		--json) json=1 ;;
		*)
			print_not_installed
			print_error "without ${TOOL_NAME}, cleanup can only list: cleanup --dry-run [--json]."
			return "$EXIT_NOT_INSTALLED"
			;;
		esac
	done
	if [[ "$dry_run" == "0" ]]; then
		print_error "${TOOL_NAME} is not installed: listing only (removing needs ${TOOL_NAME})."
	fi
	days="$(read_setting stale_days '^[0-9]+$' "$DEFAULT_STALE_DAYS")" || days="$DEFAULT_STALE_DAYS"
	local select=""
	select="SELECT model, size_bytes, last_active FROM (SELECT model, COALESCE(size_bytes, 0) AS size_bytes,
		COALESCE(last_used, downloaded, '') AS last_active FROM model_inventory WHERE source = 'pulled' AND path LIKE '/%'
		AND (COALESCE(last_used, downloaded) IS NULL OR COALESCE(last_used, downloaded) < datetime('now', '$(stale_cutoff "$days")'))
		ORDER BY last_active)"
	run_summary "$json" "$select" $'model\tsize (bytes)\tlast used' \
		"'model', model, 'size_bytes', size_bytes, 'last_active', last_active"
	return $?
}

# Print the rows of a query as a tab-separated table under a header, or as a JSON array of objects with
# the given fields ('name', column, ...).
run_summary() {
	local json="$1"
	local select="$2"
	local header="$3"
	local fields="$4"
	local db=""
	db="$(database_path)"
	if ! have_sqlite; then
		print_not_installed
		return "$EXIT_NOT_INSTALLED"
	fi
	ensure_database "$db" || return $?
	if ! is_our_schema "$db"; then
		print_error "the database ${db} was made by an older helper; ${TOOL_NAME} adopts it on its first run."
		return "$EXIT_NOT_INSTALLED"
	fi
	if [[ "$json" == "1" ]]; then
		run_sql "$db" "SELECT json_group_array(json_object(${fields})) FROM (${select})" || return "$EXIT_DATABASE"
	else
		printf '%s\n' "$header"
		run_sql "$db" "$select" || return "$EXIT_DATABASE"
	fi
	return 0
}

cmd_usage() {
	if find_tool >/dev/null 2>&1; then
		run_tool usage "$@"
		return $?
	fi
	usage_summary "$@"
	return $?
}

cmd_cleanup() {
	if find_tool >/dev/null 2>&1; then
		run_tool cleanup "$@"
		return $?
	fi
	cleanup_summary "$@"
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
  models      list downloaded models; 'models rm NAME' removes one                (alias: inventory)
  search      search Hugging Face for GGUF models
  pull        download a GGUF model: pull REPO[:QUANT] [--file NAME]            (alias: download)
  recommend   name models that fit this machine's memory
  benchmark   measure a model's generation and prompt speed here: benchmark --model NAME
  usage       per-model requests and tokens from the usage database
  cleanup     find models unused for 30+ days and offer to remove them
  nudge       one-line reminder when stale models take space (answered by sqlite3; silent if nothing)
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

Without ${TOOL_NAME}, usage [--since D] [--json] and cleanup --dry-run [--json] read the database with sqlite3.

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
	inventory) cmd_inventory "$@" ;;
	benchmark) cmd_benchmark "$@" ;;
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
