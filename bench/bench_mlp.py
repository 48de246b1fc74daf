"""The 784-512-512-10 MLP benchmark (issue 6); the same job as ``python -m fastdense bench``.

    python bench/bench_mlp.py [--quick] [--batches 1,32,256,4096] [--json P] [--plot P.png]
"""

import sys

from fastdense.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
