#!/usr/bin/env bash
# Screenshots of the web console for docs/console/ (shown in README.md and
# docs/console.md): builds the binary, starts it on a scratch SQLite
# database behind a made-up upstream, and photographs every page in
# headless Chromium through playwright-core. Needs what scripts/test.sh
# installs for the console's browser test (Debian `chromium`,
# playwright-core under /var/cache/switchyard/npm).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p switchyard
target=${CARGO_TARGET_DIR:-target}
export SY_BIN="$target/debug/switchyard"
export SY_NODE_MODULES=${SWITCHYARD_TEST_NODE_MODULES:-/var/cache/switchyard/npm/node_modules}
export SY_CHROMIUM=${SWITCHYARD_TEST_CHROMIUM:-$(command -v chromium)}
exec node scripts/console-screenshots.cjs
