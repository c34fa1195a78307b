#!/usr/bin/env bash
# Adds the project's licence header (an SPDX identifier, see README "Licence") to every Java source
# that lacks it. Idempotent; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
header='// SPDX-License-Identifier: Apache-2.0'
git ls-files '*.java' | while read -r f; do
    if [ "$(head -n 1 "$f")" != "$header" ]; then
        { echo "$header"; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
    fi
done
