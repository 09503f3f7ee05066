#!/bin/sh
# envmgr kernel launcher (POSIX sh; tested with dash and bash).
#
# Every envmgr kernelspec runs this script instead of the interpreter because a
# Jupyter restart reuses the argv read at first start: only a program that
# resolves the family's pointer at *every* start can move a restarted kernel
# onto the newest build. It then execs the interpreter, so the kernel IS this
# process (same pid: interrupt, restart and shutdown behave as with a plain
# ipykernel) and it keeps fd 9 -- opened read-only on the build's lease file,
# carrying an open-file-description (OFD) read lock -- for its whole life. gc
# deletes a build only after taking a write lock on it, which needs a writable
# descriptor that only the service account can open (envmgr/lease.py).
#
# POSIX sh cannot call fcntl(F_OFD_SETLK), so a short-lived Python helper that
# inherits fd 9 takes the lock and exits: an OFD lock belongs to the open file
# description, not to the process, so it stays as long as fd 9 (here, then in
# the exec'd kernel and children that inherit it) stays open. The helper runs
# isolated (-I -S: no user site, no PYTHON* variables) with the first of
# $ENVMGR_LOCK_PYTHON, /usr/bin/python3, python3 on PATH; any kernel language
# works (R, Julia): only the helper is Python.
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
#   --lock-wait  seconds to wait for the read lock (default 10): gc holds
#              the write lock only while it marks a build.
#   --staged   also accept a staged build (.staging-<id>): the build's smoke
#              test starts its kernel through this launcher before publication.
#
# The kernel's environment gains ENVMGR_FAMILY, ENVMGR_BUILD_ID, ENVMGR_PREFIX,
# CONDA_PREFIX and "$prefix/bin" in front of PATH (a light "activation";
# activate.d scripts are not run).
#
# Exit codes (nothing started): 64 usage, 66 lease file unusable,
# 69 build missing or being deleted (or no Python for the lock helper),
# 75 lock wait timed out.
#
# Values are only ever used quoted; nothing from a spec is evaluated.

set -u

say() { printf 'envmgr: %s\n' "$*" >&2; }
die() { _code=$1; shift; say "$*"; exit "$_code"; }

lease_dir=
mem_kib=
lock_wait=10
staged=no
while [ $# -gt 0 ]; do
    case $1 in
        --lease-dir) [ $# -ge 2 ] || die 64 "launcher: --lease-dir needs a value"
                     lease_dir=$2; shift 2 ;;
        --mem-kib)   [ $# -ge 2 ] || die 64 "launcher: --mem-kib needs a value"
                     mem_kib=$2; shift 2 ;;
        --lock-wait) [ $# -ge 2 ] || die 64 "launcher: --lock-wait needs a value"
                     lock_wait=$2; shift 2 ;;
        --staged)    staged=yes; shift ;;
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
locker=${ENVMGR_LOCK_PYTHON:-}
if [ -z "$locker" ]; then
    locker=/usr/bin/python3
    [ -x "$locker" ] || locker=$(command -v python3 2>/dev/null) || locker=
fi
[ -n "$locker" ] && [ -x "$locker" ] \
    || die 69 "no Python interpreter for the lease lock helper (tried \$ENVMGR_LOCK_PYTHON, /usr/bin/python3, python3 on PATH); set ENVMGR_LOCK_PYTHON in the kernel's environment -- ask an admin"

# Take an OFD read lock on fd 9 within $1 seconds (F_OFD_SETLKW under a timer).
# Exit 0 locked, 75 timed out, 66 the descriptor refused the lock.
read_lock() {
    "$locker" -I -S -c '
import fcntl, signal, struct, sys
def late(*_):
    raise SystemExit(75)
wait = float(sys.argv[1])
lk = struct.pack("hhqqi", fcntl.F_RDLCK, 0, 0, 0, 0)
signal.signal(signal.SIGALRM, late)
if wait > 0:
    signal.setitimer(signal.ITIMER_REAL, wait)
try:
    fcntl.fcntl(9, fcntl.F_OFD_SETLKW if wait > 0 else fcntl.F_OFD_SETLK, lk)
except BlockingIOError:
    sys.exit(75)
except OSError as exc:
    print("envmgr: cannot lock the lease:", exc, file=sys.stderr)
    sys.exit(66)
' "$1"
}

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
    [ "$staged" = yes ] && case $build in .staging-?*) build=${build#.staging-} ;; esac
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
    read_lock "$lock_wait"
    case $? in
        0) ;;
        75) die 75 "could not take the lease on build $build of family $family within ${lock_wait}s (garbage collection in progress?); try again" ;;
        *) die 66 "cannot lock lease file $lease; refusing to start build $build of family $family unprotected from garbage collection -- ask an admin" ;;
    esac

    # Holding the read lock, gc cannot start marking; check what it did before.
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
