#!/bin/sh
# Build tests/c/qgemm_test (the fd_qgemm harness) and, with arguments, run it:
#   tests/c/qgemm_build.sh OUT [check ISA | bench]        CC=clang works too.
# Same flags as setup.py: a portable build, the paths come from target attributes.
set -e
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-/tmp/qgemm_test}
${CC:-cc} -O3 -std=gnu11 -Wall -fno-math-errno -fno-trapping-math -I"$here/csrc" \
    "$here/tests/c/qgemm_test.c" "$here/csrc/fd_qgemm.c" "$here/csrc/fd_act.c" "$here/csrc/fd_gemm.c" \
    -o "$out" -lm -lpthread
[ $# -ge 2 ] || exit 0
shift
exec "$out" "$@"
