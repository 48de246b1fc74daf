"""The quantized MLP benchmark (issue 14); the same job as ``python -m fastdense bench --quantize int8``.

    python bench/bench_quant.py [--quantize int8|int4] [--quick] [--batches 1,32,256,4096] [--json P] [--plot P.png]

Run it under ``flock /work/coord/bench.lock`` on the shared development machine.
"""

import sys

from fastdense.benchmark_quant import main

if __name__ == "__main__":
    sys.exit(main())
