"""``python -m r1kit ...`` -- and ``accelerate launch [--config_file F] -m r1kit <stage> ...``,
which starts one such process per GPU (or per CPU process with gloo)."""

import sys

from r1kit.cli import main

if __name__ == "__main__":
    sys.exit(main())
