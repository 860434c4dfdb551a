#!/usr/bin/env bash
# Fuzzes manifest and form loading with cargo-fuzz (libFuzzer), seeded with the
# shipped adapters and forms: `fuzz/run.sh [seconds per target]` (default 60).
# cargo-fuzz needs nightly compiler flags; on a stable toolchain they are
# enabled with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
if ! rustc --version | grep -q nightly; then export RUSTC_BOOTSTRAP=1; fi
mkdir -p corpus/manifest corpus/form
cp ../adapters/*.json corpus/manifest/
cp ../schemas/forms/*.json corpus/form/
for target in manifest form; do
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$SECONDS_PER_TARGET" -max_len=65536
done
