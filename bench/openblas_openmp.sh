#!/usr/bin/env bash
# openblas_openmp.sh: unpack Debian's OpenBLAS built for OpenMP (libopenblas0-openmp) into a cache
# folder, WITHOUT installing it system-wide, and print the folder to put first on LD_LIBRARY_PATH
# for the PyTorch peer process only:
#
#   LD_LIBRARY_PATH="$(bench/openblas_openmp.sh)" /usr/bin/python3 bench/peer_pytorch.py ...
#
# Why: Debian's python3-torch calls BLAS through libblas.so.3 / liblapack.so.3 (see
# `ldd .../torch/lib/libtorch_cpu.so`), which a fresh install resolves to the netlib reference
# BLAS; PERFORMANCE.md found OpenBLAS-openmp the fastest choice for PyTorch on this machine, and the
# side-by-side benchmark compares lowbit against PyTorch at its best.
#
# What it is not: it does not change update-alternatives, does not install any package (dpkg -x
# only), and does not touch other processes. Idempotent: a second run reuses the cache and only
# prints the folder. Debian 12 (bookworm) and its multiarch layout assumed; needs apt-get (an
# `apt-get update` is done once if the package is not known yet; that needs root).
#
# Cache folder: $LOWBIT_OPENBLAS_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/lowbit/openblas-openmp
# (kept outside the repository on purpose, so the .deb never lands in a commit).
# stdout: the library folder only, one line. Everything else goes to stderr.
set -euo pipefail

cache="${LOWBIT_OPENBLAS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lowbit/openblas-openmp}"
pkg=libopenblas0-openmp
root="$cache/root"
stamp="$cache/.ok"

log() { echo "openblas_openmp.sh: $*" >&2; }

multiarch="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || true)"
if [ -z "$multiarch" ]; then
    multiarch="$(uname -m)-linux-gnu"
fi
libdir="$root/usr/lib/$multiarch/openblas-openmp"

# Download "$1" (a package name) into $cache/debs and unpack it into $root.
fetch_and_unpack() {
    local name="$1" deb
    mkdir -p "$cache/debs"
    deb="$(ls "$cache/debs/${name}"_*.deb 2>/dev/null | head -n1 || true)"
    if [ -z "$deb" ]; then
        log "downloading $name"
        # apt-get download writes into the current folder; the _apt sandbox user may not be able to
        # write there, in which case apt falls back to downloading as root (a harmless warning).
        if ! (cd "$cache/debs" && apt-get download "$name" >&2); then
            log "apt-get download $name failed; running apt-get update once and retrying"
            apt-get update >&2
            (cd "$cache/debs" && apt-get download "$name" >&2)
        fi
        deb="$(ls "$cache/debs/${name}"_*.deb | head -n1)"
    fi
    log "unpacking $(basename "$deb")"
    dpkg -x "$deb" "$root"
}

if [ ! -f "$stamp" ] || [ ! -e "$libdir/libblas.so.3" ]; then
    rm -f "$stamp"
    mkdir -p "$root"
    fetch_and_unpack "$pkg"
    if [ ! -d "$libdir" ]; then
        log "expected folder $libdir not found in $pkg; contents:"
        find "$root" -name '*.so*' >&2
        exit 1
    fi
    # PyTorch loads libblas.so.3 and liblapack.so.3 by these names. Debian's package ships both in
    # this folder already; make sure, and link them to the real OpenBLAS library otherwise.
    real="$(ls "$libdir"/libopenblas*.so* 2>/dev/null | head -n1 || true)"
    for soname in libblas.so.3 liblapack.so.3; do
        if [ ! -e "$libdir/$soname" ]; then
            if [ -z "$real" ]; then
                log "no $soname and no libopenblas*.so in $libdir"
                exit 1
            fi
            log "linking $soname -> $(basename "$real")"
            ln -sf "$(basename "$real")" "$libdir/$soname"
        fi
    done
    # Its own dependencies (libgfortran5, libgomp1) are normally present because python3-torch
    # pulls them in; if one is missing, unpack it too and link it into the same folder.
    # ldd lists the dependencies of a found library only, so repeat until nothing new is missing.
    for _pass in 1 2 3; do
        missing="$(LD_LIBRARY_PATH="$libdir" ldd "$libdir/libblas.so.3" | awk '/not found/ {print $1}' || true)"
        [ -n "$missing" ] || break
        for lib in $missing; do
            case "$lib" in
                libgfortran.so.5) dep=libgfortran5 ;;
                libquadmath.so.0) dep=libquadmath0 ;;
                libgomp.so.1) dep=libgomp1 ;;
                *) log "unresolved dependency $lib of libblas.so.3"; exit 1 ;;
            esac
            fetch_and_unpack "$dep"
            found="$(find "$root/usr/lib" "$root/lib" -name "$lib" 2>/dev/null | head -n1 || true)"
            [ -n "$found" ] || { log "$dep did not provide $lib"; exit 1; }
            ln -sf "$found" "$libdir/$lib"
        done
    done
    still="$(LD_LIBRARY_PATH="$libdir" ldd "$libdir/libblas.so.3" | grep 'not found' || true)"
    if [ -n "$still" ]; then
        log "libblas.so.3 still has unresolved dependencies:"
        echo "$still" >&2
        exit 1
    fi
    touch "$stamp"
fi

echo "$libdir"
