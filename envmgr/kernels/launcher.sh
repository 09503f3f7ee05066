#!/bin/sh
# envmgr kernel launcher (POSIX sh; tested with dash and bash).
#
# Every envmgr kernelspec runs this script instead of the interpreter because a
# Jupyter restart reuses the argv read at first start: only a program that
# resolves the family's pointer at *every* start can move a restarted kernel
# onto the newest build. It then execs the interpreter, so the kernel IS this
# process (same pid: interrupt, restart and shutdown behave as with a plain
# ipykernel) and it keeps fd 9 -- a shared flock on the build's lease file --
# for its whole life. gc deletes a build only after taking that lock
# exclusively (envmgr/lease.py, mark_deleting).
#
# Usage:
#   launcher.sh --lease-dir DIR [--mem-kib N] [--lock-wait SECS] [--] TARGET ARGV...
#
#   TARGET     a family's `latest` pointer (a symlink) or a build prefix.
#   DIR        the family's lease directory (Layout.lease_dir).
#   ARGV       the kernel command; every "@PREFIX@" in it is replaced by the
#              resolved build prefix. (Not "{prefix}": jupyter_client would
#              substitute that with the *server's* sys.prefix.)
#   --mem-kib  address-space limit (ulimit -v, KiB) applied before exec.
#              ENVMGR_MEM_LIMIT_KIB in the environment sets one too (e.g. from
#              the spawner); when both are set the smaller wins. It limits
#              virtual size, not RSS: leave headroom for thread stacks/mmaps.
#   --lock-wait  seconds to wait for the shared lock (default 10): gc holds
#              the exclusive lock only while it marks a build.
#
# The kernel's environment gains ENVMGR_FAMILY, ENVMGR_BUILD_ID, ENVMGR_PREFIX,
# CONDA_PREFIX and "$prefix/bin" in front of PATH (a light "activation";
# activate.d scripts are not run).
#
# Exit codes (nothing started): 64 usage, 66 lease file unusable,
# 69 build missing or being deleted, 75 lock wait timed out.
#
# Values are only ever used quoted; nothing from a spec is evaluated.

set -u

say() { printf 'envmgr: %s\n' "$*" >&2; }
die() { _code=$1; shift; say "$*"; exit "$_code"; }

lease_dir=
mem_kib=
lock_wait=10
while [ $# -gt 0 ]; do
    case $1 in
        --lease-dir) [ $# -ge 2 ] || die 64 "launcher: --lease-dir needs a value"
                     lease_dir=$2; shift 2 ;;
        --mem-kib)   [ $# -ge 2 ] || die 64 "launcher: --mem-kib needs a value"
                     mem_kib=$2; shift 2 ;;
        --lock-wait) [ $# -ge 2 ] || die 64 "launcher: --lock-wait needs a value"
                     lock_wait=$2; shift 2 ;;
        --) shift; break ;;
        -*) die 64 "launcher: unknown option: $1" ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || die 64 "launcher: usage: launcher.sh --lease-dir DIR [--mem-kib N] [--] TARGET ARGV..."
[ -n "$lease_dir" ] || die 64 "launcher: --lease-dir is required"
target=$1
shift

is_count() { case $1 in ''|*[!0-9]*) return 1 ;; esac; return 0; }
is_count "$lock_wait" || die 64 "launcher: --lock-wait must be whole seconds, not '$lock_wait'"
command -v flock >/dev/null 2>&1 \
    || die 69 "flock(1) (util-linux) is not installed on this host; kernels cannot take their build lease"

# -- memory limit: computed before locking so a bad value fails early --------
env_kib=${ENVMGR_MEM_LIMIT_KIB:-}
[ -z "$mem_kib" ] || is_count "$mem_kib" || die 64 "launcher: --mem-kib must be a number of KiB, not '$mem_kib'"
[ -z "$env_kib" ] || is_count "$env_kib" || die 64 "ENVMGR_MEM_LIMIT_KIB must be a number of KiB, not '$env_kib'"
limit_kib=$mem_kib
if [ -n "$env_kib" ] && { [ -z "$limit_kib" ] || [ "$env_kib" -lt "$limit_kib" ]; }; then
    limit_kib=$env_kib
fi

resolve() {
    # One resolution per attempt: the prefix we lock is the prefix we exec.
    realpath -- "$1" 2>/dev/null || readlink -f -- "$1" 2>/dev/null
}

is_pointer=no
[ -L "$target" ] && is_pointer=yes

attempt=0
while :; do
    attempt=$((attempt + 1))
    prefix=$(resolve "$target") || prefix=
    [ -n "$prefix" ] || die 69 "cannot resolve '$target'"
    build=${prefix##*/}
    family=${prefix%/*}
    family=${family##*/}
    case $build in
        ''|.*|latest) die 69 "'$target' resolves to '$prefix', which is not a published build" ;;
    esac
    if [ ! -d "$prefix" ]; then
        [ "$is_pointer" = yes ] && die 69 "'$target' points at build $build of family $family, which does not exist; ask an admin"
        die 69 "build $build of family $family no longer exists; choose another kernel"
    fi

    lease=$lease_dir/$build.lease
    marker=$lease_dir/$build.deleting
    if [ ! -e "$lease" ]; then
        # Normally created at publication; create it if this user may.
        ( umask 022; : >>"$lease" ) 2>/dev/null
    fi
    [ -r "$lease" ] \
        || die 66 "cannot open lease file $lease (missing or unreadable); refusing to start build $build of family $family unprotected from garbage collection -- ask an admin"
    # `command` keeps a failed redirection from killing dash; no 2>/dev/null
    # here: on `exec` it would silence the kernel's stderr for good.
    command exec 9<"$lease" || die 66 "cannot open lease file $lease; ask an admin"
    flock -s -w "$lock_wait" 9 \
        || die 75 "could not take the lease on build $build of family $family within ${lock_wait}s (garbage collection in progress?); try again"

    # Holding the shared lock, gc cannot start marking; check what it did before.
    if [ ! -e "$marker" ] && [ -d "$prefix" ]; then
        break
    fi
    exec 9<&-
    if [ "$is_pointer" = yes ] && [ "$attempt" -lt 4 ]; then
        now=$(resolve "$target") || now=
        [ "$now" = "$prefix" ] || continue      # pointer moved: try the new build
        die 69 "build $build of family $family is being deleted but '$target' still points at it; ask an admin"
    fi
    if [ "$is_pointer" = yes ]; then
        die 69 "build $build of family $family is being deleted; restart the kernel to get the current latest"
    fi
    die 69 "build $build of family $family is being deleted (release retired); choose another kernel"
done

if [ -n "$limit_kib" ]; then
    ulimit -v "$limit_kib" 2>/dev/null \
        || say "note: could not set the memory limit to $limit_kib KiB; keeping the current limit ($(ulimit -v) KiB)"
fi

# -- fill @PREFIX@ into every argument, keeping each argument one word ---------
n=$#
while [ "$n" -gt 0 ]; do
    rest=$1
    out=
    shift
    while :; do
        case $rest in
            *@PREFIX@*) out=$out${rest%%@PREFIX@*}$prefix
                        rest=${rest#*@PREFIX@} ;;
            *) out=$out$rest; break ;;
        esac
    done
    set -- "$@" "$out"
    n=$((n - 1))
done

case $1 in
    /*) [ -x "$1" ] || die 69 "build $build of family $family has no executable $1 (wrong kernel template?)" ;;
esac

ENVMGR_FAMILY=$family
ENVMGR_BUILD_ID=$build
ENVMGR_PREFIX=$prefix
CONDA_PREFIX=$prefix
PATH=$prefix/bin${PATH:+:$PATH}
export ENVMGR_FAMILY ENVMGR_BUILD_ID ENVMGR_PREFIX CONDA_PREFIX PATH
exec "$@"
