#!/usr/bin/env bash
# The README's first command ends here: a real job, end to end, on the embedded SQLite,
# with a worker that needs no API key (the shell worker running `wc` on every file).
set -euo pipefail
cd "$(dirname "$0")/.."
export ABP_HOME="${ABP_HOME:-$PWD/.abp-demo}"
abp() { node dist/cli/main.js "$@"; }

echo "== abp demo: ABP_HOME=$ABP_HOME"
echo
echo "\$ abp create --spec examples/word-count.json"
id=$(abp create --spec examples/word-count.json --quiet)
abp status "$id"
echo
echo "\$ abp start $id --wait          # runs ONE test unit and shows it to you"
abp start "$id" --wait
echo
echo "\$ abp start $id --approve --wait   # you approve; a detached executor runs the rest in parallel"
abp start "$id" --approve --wait
echo
echo "\$ abp results $id --format csv"
abp results "$id" --format csv | cut -c1-110
echo
echo "The same job with an agent instead of wc: examples/summarise-with-claude.json uses the claude"
echo "worker (Claude Code, logged in or with ANTHROPIC_API_KEY): abp create --spec examples/summarise-with-claude.json"
echo "Check what a worker needs with: abp doctor"
