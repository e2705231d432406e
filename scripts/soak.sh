#!/usr/bin/env bash
# The long versions of the reliability suite (docs/RELIABILITY.md): thousands of kills,
# a hundred thousand crash images, ten million events, a fuzzing run.
#
#   scripts/soak.sh              # everything, about 25 minutes on 2 cores
#   SOAK_ONLY=crash scripts/soak.sh
#
# Knobs (environment):
#   SOAK_SEED       seed for the randomized tests (default: from the clock; printed)
#   SOAK_KILLS      SIGKILLs of a writer process (default 5000)
#   SOAK_IMAGES     power-loss crash images per seed (default 20000)
#   SOAK_SEEDS      power-loss seeds (default 5)
#   SOAK_FUZZ_CASES proptest cases per fuzz strategy (default 100000)
#   SOAK_EVENTS     events for the one-writer/many-readers test (default 10000000)
#   SOAK_READERS    reader processes (default 4)
#   SOAK_FUZZ_SECS  seconds of cargo-fuzz, if cargo-fuzz and a nightly toolchain exist
#                   (default 600; 0 skips)
#   SOAK_ONLY       run one part: crash, points, power, corruption, fuzz, disk,
#                   concurrency, cli, loom, cargo-fuzz
#
# Tests build in release mode with overflow checks and debug assertions kept on, in
# target/soak so the normal build is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

seed=${SOAK_SEED:-$(date +%s)}
only=${SOAK_ONLY:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/soak}
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
echo "soak: seed $seed (rerun with SOAK_SEED=$seed)"

want() { [[ -z "$only" || "$only" == "$1" ]]; }
# run NAME TEST: one test binary, release build, output shown, timed.
run() {
    echo "== $1"
    local start=$SECONDS
    cargo test --release --all-features --test "$2" -- --nocapture
    echo "== $1: $((SECONDS - start)) s"
}

cargo test --release --all-features --no-run

if want crash; then
    (
        export EVSTREAM_CRASH_KILLS=${SOAK_KILLS:-5000} EVSTREAM_CRASH_SEED=$seed
        run "crash: $EVSTREAM_CRASH_KILLS SIGKILLs" crash
    )
fi
if want points; then
    run "crash points" crash_points
fi
if want power; then
    for i in $(seq 1 "${SOAK_SEEDS:-5}"); do
        (
            export EVSTREAM_POWER_SEED=$((seed + i)) EVSTREAM_POWER_IMAGES=${SOAK_IMAGES:-20000}
            run "power loss: seed $EVSTREAM_POWER_SEED, $EVSTREAM_POWER_IMAGES images" power_loss
        )
    done
fi
if want corruption; then
    run "corruption" corruption
fi
if want fuzz; then
    (
        export EVSTREAM_FUZZ_CASES=${SOAK_FUZZ_CASES:-100000}
        run "fuzz (proptest): $EVSTREAM_FUZZ_CASES cases per strategy" fuzz_open
    )
fi
if want disk; then
    run "full disk" full_disk
fi
if want concurrency; then
    (
        export EVSTREAM_CONCURRENCY_EVENTS=${SOAK_EVENTS:-10000000}
        export EVSTREAM_CONCURRENCY_READERS=${SOAK_READERS:-4}
        run "concurrency: $EVSTREAM_CONCURRENCY_EVENTS events" concurrency
    )
fi
if want cli; then
    run "hostile cli" hostile_cli
fi
if want loom; then
    echo "== loom"
    RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
        cargo test --release --no-default-features --test loom_publication
fi
if want cargo-fuzz; then
    secs=${SOAK_FUZZ_SECS:-600}
    if [[ "$secs" -gt 0 ]] && command -v cargo-fuzz >/dev/null &&
        cargo +nightly --version >/dev/null 2>&1; then
        # Grows a scratch corpus from the kept one; a crash lands in fuzz/artifacts/.
        echo "== cargo-fuzz: $secs s"
        mkdir -p fuzz/corpus-run
        (cd fuzz && cargo +nightly fuzz run open_iterate corpus-run corpus/open_iterate -- \
            -max_total_time="$secs" -max_len=4096 -seed="$seed")
        echo "to keep new inputs: (cd fuzz && cargo +nightly fuzz cmin open_iterate corpus-run)"
    else
        echo "== cargo-fuzz: skipped (needs cargo-fuzz, a nightly toolchain, SOAK_FUZZ_SECS > 0)"
    fi
fi
echo "soak: all passed (seed $seed)"
