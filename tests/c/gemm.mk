# The C-level GEMM harness and benchmark, independent of Python:
#   make -f tests/c/gemm.mk [CC=clang | CC=aarch64-linux-gnu-gcc] && build/c/gemm_test
# (tests/test_gemm_c.py and bench/bench_paths.py build the same programs themselves.)
CC ?= cc
CFLAGS ?= -O2 -std=gnu11 -fno-math-errno -fno-trapping-math
OUT ?= build/c
SRC = csrc/fd_gemm.c csrc/fd_cpu.c
DEPS = $(SRC) $(wildcard csrc/fd_gemm*.h csrc/fd_tune*.h csrc/fd_cpu.h)

all: $(OUT)/gemm_test $(OUT)/gemm_bench

$(OUT)/%: tests/c/%.c $(DEPS)
	@mkdir -p $(OUT)
	$(CC) $(CFLAGS) -Icsrc $< $(SRC) -o $@ -lpthread -lm

.PHONY: all
