#!/usr/bin/env bash
# Lint the agent framework integration: ShellCheck over .agents/scripts (and this script), markdownlint over
# .agents/ and README.md with .agents/.markdownlint.jsonc.
#   bash tests/lint-agents.sh              # both; a missing linter is an error (CI must have both)
#   bash tests/lint-agents.sh --shell      # ShellCheck only
#   bash tests/lint-agents.sh --markdown   # markdownlint only
# Linters: shellcheck (Debian package), markdownlint (npm package markdownlint-cli).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly MARKDOWNLINT_CONFIG=".agents/.markdownlint.jsonc"

run_shellcheck() {
	if ! command -v shellcheck >/dev/null 2>&1; then
		echo "lint-agents: shellcheck is not installed (Debian: apt-get install shellcheck)" >&2
		return 1
	fi
	local -a files=()
	local file=""
	while IFS= read -r -d '' file; do
		files+=("$file")
	done < <(find .agents/scripts -type f -name '*.sh' -print0 | sort -z)
	files+=("tests/lint-agents.sh")
	echo "lint-agents: shellcheck ${files[*]}"
	shellcheck --external-sources "${files[@]}"
	return $?
}

run_markdownlint() {
	if ! command -v markdownlint >/dev/null 2>&1; then
		echo "lint-agents: markdownlint is not installed (npm install -g markdownlint-cli@0.48.0)" >&2
		return 1
	fi
	echo "lint-agents: markdownlint --config ${MARKDOWNLINT_CONFIG} .agents README.md"
	markdownlint --config "$MARKDOWNLINT_CONFIG" .agents README.md
	return $?
}

main() {
	local mode="${1:-all}"
	local rc=0
	case "$mode" in
	all)
		run_shellcheck || rc=1
		run_markdownlint || rc=1
		;;
	--shell) run_shellcheck || rc=1 ;;
	--markdown) run_markdownlint || rc=1 ;;
	*)
		echo "usage: bash tests/lint-agents.sh [--shell|--markdown]" >&2
		return 2
		;;
	esac
	if [[ "$rc" -eq 0 ]]; then
		echo "lint-agents: clean"
	fi
	return "$rc"
}

main "$@"
