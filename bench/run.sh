#!/usr/bin/env bash
# rckpt benchmark (not a test): checkpoint time, restart time, the pause a
# checkpoint-and-continue costs, and image size, next to this machine's own
# disk write and memcpy rates measured in the same run and directory.
#
#   bash bench/run.sh
#
# Environment:
#   RCKPT_BENCH_DIR    where images are written (default: target/bench, on
#                      the same filesystem as the build; a fresh subdirectory
#                      is made and removed afterwards)
#   RCKPT_BENCH_RUNS   runs per measurement (default 3; the median is shown)
#   RCKPT_BENCH_SIZES  resident sizes in MiB (default "64 1024")
#   RCKPT_BENCH_M32=1  benchmark a 32-bit program (needs gcc-multilib and the
#                      i686 runtime: cargo make build-i386); no sparse 8 GiB
#                      case then (it does not fit in 4 GiB)
#
# Restarts read the image right after it was written, so from the page cache
# (as a restart on the same machine usually does).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
rckpt=$target/release/rckpt
loader=$target/release/rckpt-loader
runs=${RCKPT_BENCH_RUNS:-3}
read -r -a sizes <<<"${RCKPT_BENCH_SIZES:-64 1024}"
base=${RCKPT_BENCH_DIR:-$target/bench}
m32=()
if [[ ${RCKPT_BENCH_M32:-} == 1 ]]; then m32=(-m32); fi
pause_at=0.5    # seconds after "ready" at which SIGUSR2 is sent
pause_len=2     # seconds the pause-measuring program runs after "ready"
timeout=300     # seconds any single step may take before it counts as failed

work=""
pids=()
failed=0

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [[ -n $work ]]; then rm -rf -- "$work"; fi
    rmdir -- "$base" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() { printf '%s\n' "$*"; }
# a - b in milliseconds, for two $EPOCHREALTIME-style values
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }
median() {
    if (($# == 0)); then echo "n/a"; return; fi
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.1f", m }'
}
# MB/s (10^6 bytes per second) for BYTES moved in MS milliseconds
mbps() { awk -v b="$1" -v ms="$2" 'BEGIN { if (ms > 0) printf "%.0f", b / 1e6 / (ms / 1000); else print "n/a" }'; }
fail_run() { note "    FAILED: $*"; failed=1; }

# launch NAME CMD...: start CMD in the background with stdout into a FIFO
# read by this shell (so lines are seen the moment they are written) and
# stderr into $work/NAME.err. Sets LPID (its pid) and LFD (the FIFO's fd).
launch() {
    local name=$1
    shift
    rm -f "$work/$name.fifo" "$work/$name.out" "$work/$name.err"
    mkfifo "$work/$name.fifo"
    "$@" >"$work/$name.fifo" 2>"$work/$name.err" &
    LPID=$!
    pids+=("$LPID")
    exec {LFD}<"$work/$name.fifo"
    LNAME=$name
}
# read_until PREFIX: read lines (kept in $work/$LNAME.out) until one starts
# with PREFIX; sets LINE. Fails on EOF or timeout.
read_until() {
    while IFS= read -r -t "$timeout" -u "$LFD" LINE; do
        printf '%s\n' "$LINE" >>"$work/$LNAME.out"
        [[ $LINE == "$1"* ]] && return 0
    done
    return 1
}
# finish: read the rest of the output until EOF (the program exited), reap
# it, close the FIFO. Sets LRC (its wait status) and LEND ($EPOCHREALTIME
# once reaped). A program whose stdout stays open for $timeout seconds more
# is considered hung and killed.
finish() {
    local line p st=0 keep=()
    while IFS= read -r -t "$timeout" -u "$LFD" line || st=$?; ((st == 0)); do
        printf '%s\n' "$line" >>"$work/$LNAME.out"
    done
    if ((st > 128)); then
        note "    (pid $LPID still running after ${timeout}s: killed)"
        kill -KILL "$LPID" 2>/dev/null || true
    fi
    LRC=0
    wait "$LPID" 2>/dev/null || LRC=$?
    LEND=$EPOCHREALTIME
    exec {LFD}<&-
    rm -f "$work/$LNAME.fifo"
    for p in "${pids[@]}"; do [[ $p == "$LPID" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}
show_err() { sed 's/^/      stderr: /' "$work/$LNAME.err"; }
# D_CKPT line: "rckpt: D_CKPT: wrote FILE: N segments, K KiB stored, M ms (fsync S ms of it)"
dckpt_ms() { sed -n 's/.*D_CKPT: wrote .* KiB stored, \([0-9]*\) ms (fsync.*/\1/p' "$1" | tail -n 1; }
dckpt_sync() { sed -n 's/.*D_CKPT: wrote .* (fsync \([0-9]*\) ms of it)$/\1/p' "$1" | tail -n 1; }
dckpt_kib() { sed -n 's/.*D_CKPT: wrote .*, \([0-9]*\) KiB stored.*/\1/p' "$1" | tail -n 1; }
sizes_of() { local a b u; read -r a b u < <(stat -c '%s %b %B' "$1"); echo "$a $((b * u))"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# ---------------------------------------------------------------- set up
note "== rckpt benchmark"
note "building (cargo build --release)..."
(cd "$repo" && cargo build --release --quiet)
if ((${#m32[@]})); then
    (cd "$repo" && cargo build --release --quiet --target i686-unknown-linux-gnu -p rckpt-crt -p rckpt-loader)
fi
mkdir -p "$base"
work=$(mktemp -d "$base/run.XXXXXX")
work=$(cd "$work" && pwd)
cc -O2 -Wall -o "$work/memcpy" "$repo/bench/memcpy.c"
"$rckpt" compile cc "${m32[@]}" -O2 -Wall -o "$work/touch" "$repo/bench/touch.c"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
fs=$(findmnt -n -o FSTYPE,SOURCE -T "$work" 2>/dev/null || df -T "$work" | awk 'NR == 2 { print $2, $1 }')
tfs=$(findmnt -n -o FSTYPE,SOURCE -T "$target" 2>/dev/null || df -T "$target" | awk 'NR == 2 { print $2, $1 }')
note "machine:   $(uname -srm), ${cpu:-unknown CPU}, $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
bits=64
if ((${#m32[@]})); then bits=32; fi
note "program:   bench/touch.c relinked with rckpt compile, ${bits}-bit"
note "directory: $work ($fs; target/ is on $tfs)"
note "runs:      $runs per measurement, median shown; MB = 10^6 bytes"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
note "load:      $load0 (1/5/15 min) at the start: other work on the machine shows up as noise"

declare -A R   # R[key]="v1 v2 v3": raw values per measurement

# ---------------------------------------------------------------- machine limits
note ""
# dd_runs KEY [DD-ARGS...]: time `dd if=/dev/zero of=FILE bs=1M count=1024
# DD-ARGS` in the benchmark directory, $runs times, into R[KEY].
dd_runs() {
    local key=$1 out s ms i
    shift
    for i in $(seq "$runs"); do
        out=$(dd if=/dev/zero of="$work/dd.tmp" bs=1M count=1024 "$@" 2>&1) || { fail_run "dd: $out"; continue; }
        rm -f "$work/dd.tmp"
        s=$(printf '%s\n' "$out" | sed -n 's/.* copied, \([0-9.e+-]*\) s,.*/\1/p')
        ms=$(awk -v s="$s" 'BEGIN { printf "%.1f", s * 1000 }')
        R[$key]+="$ms "
        note "  run $i: $ms ms, $(mbps 1073741824 "$ms") MB/s"
    done
}
note "-- machine: dd if=/dev/zero of=FILE bs=1M count=1024 conv=fsync"
dd_runs dd_ms conv=fsync
note "-- machine: dd if=/dev/zero of=FILE bs=1M count=1024 (page cache, no fsync)"
dd_runs ddnf_ms
note "-- machine: memcpy of 1 GiB (bench/memcpy.c, best of 3 copies per run)"
for i in $(seq "$runs"); do
    out=$("$work/memcpy") || { fail_run "memcpy: $out"; continue; }
    g=$(printf '%s\n' "$out" | sed -n 's/^memcpy_gbps //p')
    R[memcpy]+="$g "
    note "  run $i: $g GB/s"
done

# ---------------------------------------------------------------- rckpt
# ckpt_and_restart KEY ARG RUN: checkpoint `touch ARG` with SIGTSTP, then
# restart the image with rckpt-loader and check the memory came back intact.
ckpt_and_restart() {
    local key=$1 arg=$2 i=$3 img t0 t1 ms kib wall sz restart_ms resumed sync prep
    img=$work/$key-$i.ckpt
    launch "ckpt-$key-$i" "$work/touch" "$arg" 3600 -_condor_D_FULLDEBUG -_condor_ckpt "$img"
    if ! read_until ready; then
        finish
        fail_run "checkpoint run $i: the program never printed ready (status $LRC)"
        show_err
        return
    fi
    t0=$EPOCHREALTIME
    kill -TSTP "$LPID"
    finish
    t1=$LEND
    if ((LRC != 140)); then
        fail_run "checkpoint run $i: expected exit by SIGUSR2 (status 140), got status $LRC"
        show_err
        return
    fi
    wall=$(ms_between "$t0" "$t1")
    ms=$(dckpt_ms "$work/$LNAME.err")
    kib=$(dckpt_kib "$work/$LNAME.err")
    sync=$(dckpt_sync "$work/$LNAME.err")
    if [[ -z $ms || -z $kib || -z $sync || ! -f $img ]]; then
        fail_run "checkpoint run $i: no D_CKPT line or no image"
        show_err
        return
    fi
    read -r app alloc <<<"$(sizes_of "$img")"
    R[$key.ckpt_ms]+="$ms "
    R[$key.sync_ms]+="$sync "
    R[$key.nosync_ms]+="$((ms - sync)) "
    R[$key.ckpt_wall]+="$wall "
    R[$key.kib]+="$kib "
    R[$key.apparent]+="$app "
    R[$key.alloc]+="$alloc "
    note "  run $i: checkpoint: D_CKPT $ms ms (fsync $sync ms of it), wall $wall ms (SIGTSTP to exit)," \
        "$kib KiB stored, $(mbps $((kib * 1024)) "$ms") MB/s; image $app bytes apparent, $alloc allocated"

    t0=$EPOCHREALTIME
    launch "restart-$key-$i" "$loader" --debug "$img"
    if ! read_until resumed; then
        finish
        fail_run "restart run $i: the restored program never printed resumed (status $LRC)"
        show_err
        rm -f "$img"
        return
    fi
    resumed=${LINE#resumed }
    finish
    restart_ms=$(ms_between "$t0" "$resumed")
    local commit
    commit=$(sed -n 's/.*D_CKPT: restored .*commit took \([0-9]*\) us.*/\1/p' "$work/$LNAME.err")
    prep=$(sed -n 's/.*D_CKPT: restored .* read and verified [0-9]* KiB in \([0-9]*\) ms.*/\1/p' "$work/$LNAME.err")
    if ((LRC != 0)) || ! grep -q '^verify ok' "$work/$LNAME.out"; then
        fail_run "restart run $i: status $LRC, output: $(tr '\n' ' ' <"$work/$LNAME.out")"
        show_err
        rm -f "$img"
        return
    fi
    R[$key.restart_ms]+="$restart_ms "
    note "         restart: $restart_ms ms (launch of rckpt-loader to the program's 'resumed')," \
        "$(mbps $((kib * 1024)) "$restart_ms") MB/s; loader: read+verify ${prep:-?} ms, commit ${commit:-?} us; memory verified"
    rm -f "$img"
}

# pause KEY ARG RUN SIGNAL: max gap between loop iterations of `touch ARG`
# during $pause_len s, with SIGUSR2 sent $pause_at s in (or no signal).
pause_run() {
    local key=$1 arg=$2 i=$3 sig=$4 img gap ms
    img=$work/$key-pause-$i.ckpt
    launch "pause-$key-$i-$sig" "$work/touch" "$arg" "$pause_len" -_condor_D_FULLDEBUG -_condor_ckpt "$img"
    if ! read_until ready; then
        finish
        fail_run "pause run $i: the program never printed ready (status $LRC)"
        show_err
        return
    fi
    sleep "$pause_at"
    [[ $sig == none ]] || kill "-$sig" "$LPID"
    finish
    gap=$(sed -n 's/^max_gap_ms \([0-9.]*\).*/\1/p' "$work/$LNAME.out")
    if ((LRC != 0)) || [[ -z $gap ]]; then
        fail_run "pause run $i ($sig): status $LRC, output: $(tr '\n' ' ' <"$work/$LNAME.out")"
        show_err
        rm -f "$img"
        return
    fi
    if [[ $sig == none ]]; then
        R[$key.gap0]+="$gap "
        note "  run $i: no checkpoint: max gap $gap ms"
    else
        ms=$(dckpt_ms "$work/$LNAME.err")
        if [[ -z $ms || ! -f $img ]]; then
            fail_run "pause run $i: no image was written by SIGUSR2"
            show_err
        else
            R[$key.gap]+="$gap "
            note "  run $i: SIGUSR2: max gap $gap ms; the image was written in the background in $ms ms"
        fi
    fi
    rm -f "$img"
}

keys=()
for s in "${sizes[@]}"; do
    key=r$s
    keys+=("$key")
    note ""
    note "-- $s MiB resident: checkpoint (SIGTSTP) and restart (rckpt-loader IMAGE)"
    for i in $(seq "$runs"); do ckpt_and_restart "$key" "$s" "$i"; done
    note "-- $s MiB resident: pause of a SIGUSR2 checkpoint (program keeps running)"
    for i in $(seq "$runs"); do pause_run "$key" "$s" "$i" USR2; done
    note "-- $s MiB resident: the same loop without any checkpoint (noise floor)"
    for i in $(seq "$runs"); do pause_run "$key" "$s" "$i" none; done
done
note ""
if ((${#m32[@]} == 0)); then
    note "-- sparse: 8 GiB mapped (MAP_NORESERVE), 16 MiB touched: checkpoint and restart"
    keys+=(sparse)
    for i in $(seq "$runs"); do ckpt_and_restart sparse sparse "$i"; done
fi

# ---------------------------------------------------------------- table
# shellcheck disable=SC2086 # the raw values are space-separated on purpose
med() { median ${R[$1]:-}; }
label() {
    case $1 in
        sparse) echo "sparse 8G/16M" ;;
        r*) local m=${1#r}; if ((m % 1024 == 0)); then echo "$((m / 1024)) GiB"; else echo "$m MiB"; fi ;;
    esac
}

dd_ms=$(med dd_ms)
note ""
note "== rckpt benchmark results (median of $runs runs; raw runs above)"
note "   dir $work: $fs; $(uname -r); $(nproc) CPUs;" \
    "load average $load0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
note ""
printf '%-14s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n' \
    "resident" "ckpt ms" "of it" "ckpt" "w/o fsync" "ckpt ms" "restart" "restart" "SIGUSR2" "gap w/o"
printf '%-14s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n' \
    "" "(D_CKPT)" "fsync" "MB/s" "MB/s" "(wall)" "ms" "MB/s" "pause ms" "ckpt ms"
for key in "${keys[@]}"; do
    kib=$(med "$key.kib")
    cms=$(med "$key.ckpt_ms")
    rms=$(med "$key.restart_ms")
    bytes=$(awk -v k="$kib" 'BEGIN { printf "%.0f", k * 1024 }')
    printf '%-14s %9s %9s %9s %9s %9s %9s %9s %9s %9s\n' "$(label "$key")" \
        "$cms" "$(med "$key.sync_ms")" "$(mbps "$bytes" "$cms")" "$(mbps "$bytes" "$(med "$key.nosync_ms")")" \
        "$(med "$key.ckpt_wall")" "$rms" "$(mbps "$bytes" "$rms")" "$(med "$key.gap")" "$(med "$key.gap0")"
done
note ""
if ((${#m32[@]} == 0)); then
    note "image size, sparse 8 GiB mapped / 16 MiB touched: $(mib "$(med sparse.apparent)") MiB apparent," \
        "$(mib "$(med sparse.alloc)") MiB allocated (du)"
fi
for key in "${keys[@]}"; do
    [[ $key == sparse ]] && continue
    note "image size, $(label "$key") resident: $(mib "$(med "$key.apparent")") MiB apparent," \
        "$(mib "$(med "$key.alloc")") MiB allocated"
done
note ""
note "this machine, same run, same directory:"
note "  dd bs=1M count=1024 conv=fsync: $dd_ms ms, $(mbps 1073741824 "$dd_ms") MB/s"
note "  dd bs=1M count=1024 (no fsync):  $(med ddnf_ms) ms, $(mbps 1073741824 "$(med ddnf_ms)") MB/s"
note "  memcpy 1 GiB (bench/memcpy.c):  $(med memcpy) GB/s"
note ""
note "for scale, published figures for 1 GiB resident on this kind of machine:"
note "  CRIU 4.2: dump 1 GiB ~ 760 ms, dump-and-continue (--leave-running) pause ~ 550 ms, restore ~ 690 ms"
note "  DMTCP:    dump ~ 2300 ms, restart ~ 680 ms"
note ""
note "ckpt MB/s and restart MB/s count the bytes the image stores (D_CKPT 'KiB stored')."
note "ckpt includes fsync of the image and its directory (atomic, durable checkpoints); 'w/o fsync'"
note "is the same checkpoint minus that time, comparable with tools that do not fsync (CRIU does not)."
note "restart = launch of rckpt-loader to the restored program printing 'resumed' (page-cache-warm image)."
note "SIGUSR2 pause = largest gap between two iterations of the program's loop (it does not write its buffer)."

if ((failed)); then
    note ""
    note "some runs FAILED (see above)"
    exit 1
fi
