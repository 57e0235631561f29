#!/usr/bin/env bash
# rckpt quick-start demo: build rckpt, relink a small C program with it,
# checkpoint the program while it runs, inspect the image, and restart it.
#
# Needs only a Rust toolchain (rustup stable) and gcc. Run from anywhere:
#   ./demo.sh          # a 64-bit program
#   ./demo.sh -m32     # the same with a 32-bit program (needs gcc-multilib and
#                      # `rustup target add i686-unknown-linux-gnu`)
# Exits 0 if the restarted program carried on and finished correctly.
set -euo pipefail

m32=()
case ${1:-} in
    "") ;;
    -m32) m32=(-m32) ;;
    *) echo "usage: $0 [-m32]" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
rckpt=$target/release/rckpt
steps=12       # the demo program counts 1..12, one step every 0.2 s
stop_after=3   # checkpoint it once it has printed this many steps

if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
fail() { printf '\ndemo FAILED: %s\n' "$*" >&2; exit 1; }

work=""
pid=""
tailpid=""
cleanup() {
    local p
    for p in $pid $tailpid; do
        if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
        wait "$p" 2>/dev/null || true
    done
    if [[ -n $work ]]; then rm -rf -- "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Building rckpt (cargo build --release)"
(cd "$repo" && cargo build --release)
if ((${#m32[@]})); then
    say "Building the 32-bit runtime (cargo build --release --target i686-unknown-linux-gnu ...)"
    (cd "$repo" && cargo build --release --target i686-unknown-linux-gnu -p rckpt-crt -p rckpt-loader)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/rckpt-demo.XXXXXX")
cd "$work"
cp "$repo/examples/counter.c" .

say "Relinking examples/counter.c with the rckpt runtime, in $work"
echo "\$ rckpt compile cc ${m32[*]:+${m32[*]} }-O2 -o counter counter.c"
"$rckpt" compile cc "${m32[@]}" -O2 -o counter counter.c
ls -l counter
file counter 2>/dev/null || true

say "Running ./counter $steps (it prints one step every 0.2 s)"
echo "\$ ./counter $steps -_condor_D_FULLDEBUG &"
./counter "$steps" -_condor_D_FULLDEBUG >run1.out 2>&1 &
pid=$!
# Show its output as it comes.
tail -n +1 -s 0.1 --pid="$pid" -f run1.out &
tailpid=$!

for _ in $(seq 300); do
    grep -q "^step $stop_after of" run1.out && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
grep -q "^step $stop_after of" run1.out || fail "counter did not reach step $stop_after (output above)"

say "Sending SIGTSTP (Ctrl-Z) to counter (pid $pid): it writes counter.ckpt and exits"
kill -TSTP "$pid"
rc=0
wait "$pid" 2>/dev/null || rc=$?
pid=""
wait "$tailpid" || true
tailpid=""
if ((rc > 128)); then
    sig=$(kill -l $((rc - 128)))
    echo "counter exited by signal SIG$sig (exit status $rc)"
    [[ $sig == USR2 ]] || fail "expected counter to exit by SIGUSR2 after its checkpoint, got SIG$sig"
else
    fail "expected counter to exit by SIGUSR2 after its checkpoint, got exit status $rc"
fi
[[ -s counter.ckpt ]] || fail "no checkpoint file counter.ckpt was written"
last=$(grep -o '^step [0-9]*' run1.out | tail -n 1 | cut -d' ' -f2)
echo "It had printed up to step $last of $steps."
echo "\$ ls -l counter.ckpt"
ls -l counter.ckpt
echo "\$ du -h counter.ckpt   # space actually used"
du -h counter.ckpt

say "Inspecting the image: rckpt info counter.ckpt"
"$rckpt" info counter.ckpt

say "Restarting: ./counter -_condor_restart counter.ckpt"
echo "\$ ./counter -_condor_restart counter.ckpt"
rc=0
./counter -_condor_restart counter.ckpt | tee run2.out || rc=$?
((rc == 0)) || fail "the restarted counter exited with status $rc"

# Check that it carried on exactly where it stopped and finished correctly.
expect=$(
    sum=0
    for ((i = 1; i <= steps; i++)); do
        sum=$((sum + i * i))
        if ((i > last)); then echo "step $i of $steps: sum of squares = $sum"; fi
    done
    echo "done: sum of squares 1..$steps = $sum"
)
if [[ $(cat run2.out) != "$expect" ]]; then
    echo "expected the restarted run to print:" >&2
    printf '%s\n' "$expect" >&2
    fail "the restarted counter did not carry on correctly from step $last"
fi

say "Success: the restarted counter carried on from step $((last + 1)) and finished (sum $((steps * (steps + 1) * (2 * steps + 1) / 6)))."
