#!/usr/bin/env bash
# Regenerates conformance/REPORT.md: the suite on every engine, as markdown.
# Built with the dev profile (the test build): conformance is not about speed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
cargo run --quiet -p polyhost-cli --features all-engines -- conformance --engine all --format markdown \
    --note "date: $(date -u +%Y-%m-%d)" --note "commit: $commit" \
    --note "machine: $(uname -m), $(nproc) cores" > conformance/REPORT.md.new || status=$?
mv conformance/REPORT.md.new conformance/REPORT.md
tail -n 1 conformance/REPORT.md
exit "${status:-0}"
