#!/usr/bin/env bash
# The Raspberry Pi check: installs this checkout in ARM Debian userlands (qemu-user + binfmt_misc,
# built by debootstrap) with the Raspberry Pi commands of docs/raspberry-pi.md verbatim, runs `edgeser score` and
# benchmarks/pi/parity.py under each Pi core (QEMU_CPU), compares with this x86 host and writes
# benchmarks/PI.md, whose last line says ok or FAIL. Needs root and Debian's apt.
#
#   sudo benchmarks/pi/check.sh          # first run ~20-30 min (debootstrap, apt, pip), then ~2 min
#   EDGESER_PI_STORE=/some/dir benchmarks/pi/check.sh  # where userlands live (not the repo)
#   PYTHON=/path/to/venv/bin/python ...  # the host Python with edgeser installed (x86 reference)
#   EDGESER_PI_USERLANDS=armel ...       # only these Debian arches (default: all of USERLANDS)
set -euo pipefail
cd "$(dirname "$0")/../.."
STORE=${EDGESER_PI_STORE:-/var/cache/edgeser-pi}
PYTHON=${PYTHON:-python3}
CHROOT=$(command -v chroot)  # env -i below gives the userland a Pi user's PATH
# userland = Debian arch : Pi OS flavour (docs block) : Pi cores to run under. armel (ARMv5TE
# and later, soft float) is the Debian architecture that runs on ARMv6 (Pi 1, Zero, Zero W):
# no onnxruntime and no soxr there, so the numpy backend and resampler run (docs block pi-armv6).
USERLANDS=("arm64:pi-64bit:cortex-a72 cortex-a53 cortex-a76" "armhf:pi-32bit:cortex-a7"
    "armel:pi-armv6:arm1176")
if [ -n "${EDGESER_PI_USERLANDS:-}" ]; then
    chosen=()
    for entry in "${USERLANDS[@]}"; do
        [[ " $EDGESER_PI_USERLANDS " == *" ${entry%%:*} "* ]] && chosen+=("$entry")
    done
    USERLANDS=("${chosen[@]}")
fi
suite() {
    # The Debian release of arch $1's userland: trixie; bookworm for armel, the 32-bit Pi OS
    # that ARMv6 boards last got, which has neither python3-onnxruntime nor python3-soxr.
    if [ "$1" = armel ]; then echo bookworm; else echo trixie; fi
}
# Backends parity.py also runs with, besides load's default, where this checkout's
# edgeser.load takes a `backend` argument (else they are skipped, and the log says so).
read -ra EXTRA_BACKENDS <<<"${EDGESER_PI_BACKENDS:-numpy}"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
mkdir -p "$STORE/results"
log() { echo "[pi-check $(date -u +%H:%M:%S)] $*" >&2; }

ensure_tools() {
    # qemu-user-static brings the binfmt_misc handlers; binfmt_misc itself may not be mounted.
    command -v debootstrap >/dev/null && command -v qemu-aarch64-static >/dev/null \
        && command -v qemu-arm-static >/dev/null || {
        apt-get update -qq
        apt-get install -y -qq qemu-user-static binfmt-support debootstrap >/dev/null
    }
    mountpoint -q /proc/sys/fs/binfmt_misc \
        || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    for handler in qemu-aarch64 qemu-arm; do
        [ -e "/proc/sys/fs/binfmt_misc/$handler" ] || update-binfmts --enable "$handler"
    done
}

mirror() {
    # The Debian mirror this host's apt already uses (never hard-coded here).
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n 1 \
        | tr -d ' '
}

build_userland() {
    # A minimal Debian for $1 (arch) in $STORE/RELEASE-$1, with a `pi` user; reused once built.
    local arch=$1 release root
    release=$(suite "$1")
    root="$STORE/$release-$1"
    [ -e "$root/.edgeser-userland" ] && return 0
    log "building the $release $arch userland in $root (first run: ~10-20 min)"
    rm -rf "$root.tmp"
    nice debootstrap --arch="$arch" --variant=minbase --include=sudo,ca-certificates \
        "$release" "$root.tmp" "$(mirror)" >"$STORE/debootstrap-$arch.log" 2>&1 \
        || { log "debootstrap failed: $STORE/debootstrap-$arch.log"; return 1; }
    chroot "$root.tmp" useradd --create-home --shell /bin/bash pi
    [ -e "$root" ] && rm -rf "$root"
    mv "$root.tmp" "$root"
    touch "$root/.edgeser-userland"
}

cpuinfo() {
    # A Raspberry Pi's /proc/cpuinfo for core $1 (under qemu-user the guest sees the x86 host's,
    # which ARM code, onnxruntime's cpuinfo included, cannot parse).
    local features part variant revision arch=8 name model
    case $1 in
        cortex-a72) features="fp asimd evtstrm crc32 cpuid" part=0xd08 variant=0x0 revision=3
                    model="Raspberry Pi 4 Model B Rev 1.4" ;;
        cortex-a53) features="fp asimd evtstrm crc32 cpuid" part=0xd03 variant=0x0 revision=4
                    model="Raspberry Pi 3 Model B Plus Rev 1.3" ;;
        cortex-a76) features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
                    part=0xd0b variant=0x4 revision=1 model="Raspberry Pi 5 Model B Rev 1.0" ;;
        cortex-a7)  features="half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm"
                    part=0xc07 variant=0x0 revision=5 arch=7 model="Raspberry Pi 2 Model B Rev 1.1" ;;
        # (an ARM1176's CPUID scheme makes the kernel print architecture 7, as on a real Pi 1)
        arm1176)    features="half thumb fastmult vfp edsp java tls" part=0xb76 variant=0x0
                    revision=7 arch=7 model="Raspberry Pi Zero W Rev 1.1" ;;
        *) log "no cpuinfo for $1"; return 1 ;;
    esac
    for n in 0 1 2 3; do
        echo "processor	: $n"
        case $1 in
            arm1176) echo "model name	: ARMv6-compatible processor rev $revision (v6l)" ;;
            cortex-a7) echo "model name	: ARMv7 Processor rev $revision (v7l)" ;;
        esac
        echo "BogoMIPS	: 108.00"
        echo "Features	: $features"
        echo "CPU implementer	: 0x41"
        echo "CPU architecture: $arch"
        echo "CPU variant	: $variant"
        echo "CPU part	: $part"
        echo "CPU revision	: $revision"
        echo
    done
    echo "Revision	: a02082"
    echo "Model		: $model"
}

MOUNTED=()
mount_userland() {
    # proc, sys, dev and the host's DNS inside userland $1, with core $2's cpuinfo over proc's.
    local root=$1
    mount -t proc proc "$root/proc" && MOUNTED+=("$root/proc")
    mount --bind /sys "$root/sys" && MOUNTED+=("$root/sys")
    mount --bind /dev "$root/dev" && MOUNTED+=("$root/dev")
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    # This host's certificate store, for pip behind a TLS-inspecting proxy (a Pi on the same
    # network would need the same); pip in the userland is pointed at it by in_userland.
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/edgeser-host-ca.crt"
    grep -q "$(hostname)" "$root/etc/hosts" 2>/dev/null || echo "127.0.1.1 $(hostname)" >>"$root/etc/hosts"
}
unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount -l "${MOUNTED[i]}" 2>/dev/null || true
    done
    MOUNTED=()
}
trap unmount_all EXIT

readme_block() {
    # The fenced block after `<!-- $1 -->` in docs/raspberry-pi.md (as .ci/run reads the test
    # command from the README), or in $EDGESER_PI_README (a draft of those blocks).
    sed -n "/<!-- $1 -->/,/^\`\`\`\$/p" "${EDGESER_PI_README:-docs/raspberry-pi.md}" | sed -n '/^```/,/^```/p' | grep -v '^```'
}

checkout_files() {
    # The checkout's files, tracked and untracked-not-ignored (NUL-separated; deleted ones left out).
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
        if [ -f "$f" ]; then printf '%s\0' "$f"; fi
    done
}

copy_checkout() {
    # The checkout's files (tracked and untracked-not-ignored) as ~pi/edgeser, a Pi user's clone.
    local root=$1 dest="$1/home/pi/edgeser"
    rm -rf "$dest" && mkdir -p "$dest"
    checkout_files | tar --null -T - -cf - | tar -xf - -C "$dest"
    chroot "$root" chown -R pi:pi /home/pi/edgeser
}

in_userland() {
    # Run $3... in userland $1 as user pi under Pi core $2 (QEMU_CPU), from the clone, in a
    # private mount namespace where /proc/cpuinfo is that core's: cores can run side by side.
    local root=$1 cpu=$2
    shift 2
    cpuinfo "$cpu" >"$STORE/cpuinfo-$cpu"
    unshare --mount --propagation private \
        bash -c 'mount --bind "$1" "$2/proc/cpuinfo" && shift 2 && exec "$@"' _ \
        "$STORE/cpuinfo-$cpu" "$root" \
        env -i QEMU_CPU="$cpu" HOME=/home/pi USER=pi LC_ALL=C.UTF-8 \
        PIP_CERT=/etc/edgeser-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
        ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} \
        PATH=/usr/local/bin:/usr/bin:/bin "$CHROOT" --userspec=pi:pi "$root" \
        bash -c 'cd ~/edgeser && eval "$1"' bash "$*"
}

as_root() {
    # Run $2 in userland $1 as root, from the clone (a Pi user's `sudo`: setuid cannot take
    # effect under qemu-user, so sudo lines are entered as root, where sudo is a no-op).
    env -i HOME=/root USER=root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$1" bash -euo pipefail -c "cd /home/pi/edgeser && $2"
}

install_checkout() {
    # The documented install commands for flavour $2 in userland $1 under core $3, line by line:
    # `sudo ...` lines as root, the others as user pi. The clone is refreshed every run; the
    # install is redone only when those commands or what gets installed (the packages and
    # pyproject.toml) changed since the last one.
    local root=$1 block=$2 cpu=$3 stamp line log="$STORE/install-$2.log"
    copy_checkout "$root"
    stamp=$( (readme_block "$block"; checkout_files | grep -zE '^(edgeser|distill|export)/|^pyproject.toml$' \
        | xargs -0 sha256sum) | sha256sum | cut -c1-16)
    if [ "$(cat "$root/.edgeser-installed" 2>/dev/null)" = "$stamp" ]; then
        log "$block: this checkout is installed already (stamp $stamp)"
        return 0
    fi
    rm -rf "$root/home/pi/edgeser-venv" "$root/.edgeser-installed"
    log "$block: running the documented commands under $cpu (log: $log)"
    : >"$log"
    while IFS= read -r line; do
        echo "+ $line" | tee -a "$log" >&2
        if [[ $line == sudo\ * ]]; then
            as_root "$root" "$line" </dev/null >>"$log" 2>&1
        else
            in_userland "$root" "$cpu" "$line" </dev/null >>"$log" 2>&1
        fi || { log "install failed:"; tail -n 20 "$log" >&2; return 1; }
    done < <(readme_block "$block" | grep -v 'edgeser score')
    echo "$stamp" >"$root/.edgeser-installed"
}

has_backend() {
    # Whether this checkout's edgeser.load takes a backend argument (asked of the x86 install).
    "$PYTHON" -c 'import inspect, sys, edgeser
sys.exit("backend" not in inspect.signature(edgeser.load).parameters)' >/dev/null 2>&1
}

backend_checks() {
    # parity.py with edgeser.load(backend=$3) under core $2 of userland $1.
    local root=$1 cpu=$2 backend=$3 out="$STORE/results/$2.$3"
    log "under $cpu: benchmarks/pi/parity.py with backend $backend"
    if in_userland "$root" "$cpu" \
        "~/edgeser-venv/bin/python benchmarks/pi/parity.py examples/speech.wav $backend" \
        >"$out.json" 2>"$out.err" </dev/null; then
        echo 0 >"$out.rc"
    else
        echo $? >"$out.rc"
    fi
}

core_checks() {
    # The documented `edgeser score` line and parity.py under core $2 of userland $1.
    local root=$1 cpu=$2 score_line=$3 out="$STORE/results/$2"
    log "under $cpu: $score_line; benchmarks/pi/parity.py"
    if in_userland "$root" "$cpu" "$score_line" >"$out.score" 2>"$out.err" </dev/null \
        && in_userland "$root" "$cpu" \
            "~/edgeser-venv/bin/python benchmarks/pi/parity.py examples/speech.wav" \
            >"$out.json" 2>>"$out.err" </dev/null; then
        echo 0 >"$out.rc"
    else
        echo $? >"$out.rc"
    fi
}

broken_wheel_check() {
    # PyPI's onnxruntime 1.21.0 aarch64 wheel, pinned by a user, under a Pi 4 core: importing
    # it dies with SIGILL (why edgeser refuses it); importing edgeser must refuse it instead.
    local root=$1 cpu=cortex-a72 venv=/home/pi/ort-1.21.0-venv
    local stamp
    stamp=$(cat "$root/.edgeser-installed")  # this checkout's install stamp (install_checkout)
    if [ ! -e "$root$venv/.installed" ]; then
        log "installing onnxruntime==1.21.0 from PyPI in $venv"
        in_userland "$root" "$cpu" "rm -rf $venv && python3 -m venv $venv && $venv/bin/pip install . onnxruntime==1.21.0 && echo $stamp >$venv/.installed" \
            </dev/null >"$STORE/install-ort-1.21.0.log" 2>&1 \
            || { log "failed: $STORE/install-ort-1.21.0.log"; return 1; }
    elif [ "$(cat "$root$venv/.installed")" != "$stamp" ]; then
        log "reinstalling this checkout in $venv"
        in_userland "$root" "$cpu" "$venv/bin/pip install --no-deps --force-reinstall . && echo $stamp >$venv/.installed" \
            </dev/null >"$STORE/install-ort-1.21.0.log" 2>&1 \
            || { log "failed: $STORE/install-ort-1.21.0.log"; return 1; }
    fi
    log "onnxruntime 1.21.0 wheel under $cpu: import onnxruntime, then import edgeser"
    in_userland "$root" "$cpu" "$venv/bin/python -P -c 'import onnxruntime'" >/dev/null 2>&1 \
        && echo 0 >"$STORE/results/ort-1.21.0.onnxruntime.rc" || echo $? >"$STORE/results/ort-1.21.0.onnxruntime.rc"
    in_userland "$root" "$cpu" "$venv/bin/python -P -c 'import edgeser'" >/dev/null 2>"$STORE/results/ort-1.21.0.edgeser.err" \
        && echo 0 >"$STORE/results/ort-1.21.0.edgeser.rc" || echo $? >"$STORE/results/ort-1.21.0.edgeser.rc"
}

ensure_tools
rm -f "$STORE"/results/*
# The x86 reference: the same script and command on this host.
"$PYTHON" benchmarks/pi/parity.py examples/speech.wav >"$STORE/results/x86_64.json"
"$PYTHON" -m edgeser score examples/speech.wav >"$STORE/results/x86_64.score"
backends=()
for backend in "${EXTRA_BACKENDS[@]}"; do
    if has_backend; then backends+=("$backend"); else
        log "backend $backend: this checkout's edgeser.load takes no backend argument; skipped"
    fi
done
status=0
for entry in "${USERLANDS[@]}"; do  # build, mount and install one userland after the other
    IFS=: read -r arch block cpus <<<"$entry"
    root="$STORE/$(suite "$arch")-$arch"
    build_userland "$arch"
    mount_userland "$root"
    install_checkout "$root" "$block" "${cpus%% *}" || status=1
done
jobs=()
for entry in "${USERLANDS[@]}"; do  # then every core's checks side by side
    IFS=: read -r arch block cpus <<<"$entry"
    root="$STORE/$(suite "$arch")-$arch"
    [ -e "$root/.edgeser-installed" ] || continue
    for cpu in $cpus; do
        core_checks "$root" "$cpu" "$(readme_block "$block" | grep 'edgeser score')" &
        jobs+=($!)
        for backend in "${backends[@]}"; do
            backend_checks "$root" "$cpu" "$backend" &
            jobs+=($!)
        done
    done
    if [ "$arch" = arm64 ]; then broken_wheel_check "$root" & jobs+=($!); fi
done
for job in "${jobs[@]}"; do wait "$job" || status=1; done
unmount_all
"$PYTHON" -m benchmarks.pi.report --results "$STORE/results" --userlands "${USERLANDS[@]}" \
    --backends "${backends[@]}" --out "${EDGESER_PI_OUT:-benchmarks/PI.md}" || status=1
tail -n 1 "${EDGESER_PI_OUT:-benchmarks/PI.md}"
exit "$status"
