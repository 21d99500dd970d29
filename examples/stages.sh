# Shared by the examples/make_*.sh recipes (sourced, not run): `stage NAME COMMAND...` runs a
# stage under $NICE and appends its wall time to $TIMINGS once it succeeds; a stage already
# recorded there is skipped (delete its line, or the file, to run it again). The corpora must
# be at $CORPORA.
CORPORA=${CORPORA:-../shared/corpora}
NICE=${NICE:-nice -n 10}

stage() {  # stage NAME COMMAND...: run it and record its wall time, unless recorded already
    local name=$1 start=$SECONDS
    shift
    if [ -f "$TIMINGS" ] && cut -f1 "$TIMINGS" | grep -qxF "$name"; then
        echo "== $name: done (recorded in $TIMINGS), skipped" >&2
        return 0
    fi
    echo "== $name: $*" >&2
    $NICE "$@"
    printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "$(date -u +%FT%TZ)" >>"$TIMINGS"
}

test -d "$CORPORA/ravdess" || { echo "no corpora at $CORPORA" >&2; exit 2; }
