# Shared by the examples/make_*.sh recipes (sourced, not run): `stage NAME COMMAND...` runs a
# stage under $NICE and appends its wall time to $TIMINGS; the corpora must be at $CORPORA.
CORPORA=${CORPORA:-../shared/corpora}
NICE=${NICE:-nice -n 10}

stage() {  # stage NAME COMMAND...: run it, record its wall time
    local name=$1 start=$SECONDS
    shift
    echo "== $name: $*" >&2
    $NICE "$@"
    printf '%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "$(date -u +%FT%TZ)" >>"$TIMINGS"
}

test -d "$CORPORA/ravdess" || { echo "no corpora at $CORPORA" >&2; exit 2; }
