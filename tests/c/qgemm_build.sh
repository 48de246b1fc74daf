#!/bin/sh
# Build tests/c/qgemm_test (the fd_qgemm harness) and, with arguments, run it:
#   tests/c/qgemm_build.sh OUT [check ISA | bench]
# CC=clang works too (HELPERS_CC=gcc builds the other units with gcc).  fd_qgemm.c gets setup.py's flags (a portable build: the paths come from
# target attributes); HELPERS_OPT (default -O3) is for the code it calls, e.g. -O1 to build the
# activation epilogue quickly when only checking.
set -e
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-/tmp/qgemm_test}
flags="-std=gnu11 -Wall -fno-math-errno -fno-trapping-math -I$here/csrc"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${CC:-cc} -O3 $flags -c "$here/csrc/fd_qgemm.c" -o "$tmp/fd_qgemm.o"
for f in fd_act fd_gemm fd_cpu; do
    ${HELPERS_CC:-${CC:-cc}} ${HELPERS_OPT:--O3} $flags -c "$here/csrc/$f.c" -o "$tmp/$f.o"
done
${CC:-cc} -O2 $flags "$here/tests/c/qgemm_test.c" "$tmp"/*.o -o "$out" -lm -lpthread
[ $# -ge 2 ] || exit 0
shift
exec "$out" "$@"
