# The C-level activation harness, independent of Python:
#   make -f tests/c/act.mk [CC=clang | CC=aarch64-linux-gnu-gcc] && build/c/act_test [--quick]
# csrc/fd_act.c gets setup.py's flags (what ships: the vector code and its FMA contraction depend on
# them); tests/test_activations_c.py and .ci/arm64-c build the same program themselves.
CC ?= cc
KERNEL_CFLAGS ?= -O3 -std=gnu11 -fno-math-errno -fno-trapping-math
CFLAGS ?= -O2 -std=gnu11 -Wall -fno-math-errno -fno-trapping-math
OUT ?= build/c
SRC = csrc/fd_act.c csrc/fd_cpu.c

$(OUT)/act_test: tests/c/act_test.c tests/c/act_ref.h $(SRC) $(wildcard csrc/fd_act*.h csrc/fd_cpu.h)
	@mkdir -p $(OUT)
	$(CC) $(KERNEL_CFLAGS) -Icsrc -c csrc/fd_act.c -o $(OUT)/fd_act.o
	$(CC) $(CFLAGS) -Icsrc tests/c/act_test.c $(OUT)/fd_act.o csrc/fd_cpu.c -o $@ -lm
