"""Command line: ``python -m fastdense {info,bench,predict}`` (also the ``fastdense`` script)."""
from __future__ import annotations

import sys

USAGE = """usage: fastdense COMMAND [ARGS]

commands:
  info                          version, CPU path, BLAS library and threads
  bench [--quick] [--quantize int8|int4|int4-act] [--json P] [--plot P.png]
                                time a built-in 784-512-512-10 MLP against numpy (and torch,
                                onnxruntime, keras when installed); no files needed
  predict MODEL INPUT -o OUTPUT [--columns ...] [--batch-size ROWS] [--dtype float32]
                                run a saved Keras/fastdense model (.keras/.h5) on a .npy, .npz,
                                .csv or .parquet input, streamed in batches (bounded memory)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "info":
        import fastdense
        fastdense.show_config()
        return 0
    if command == "bench":
        from fastdense import benchmark
        return benchmark.main(rest) or 0
    if command == "predict":
        from fastdense.saving import cli
        return cli.predict_main(rest) or 0
    print(f"fastdense: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
