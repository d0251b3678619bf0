"""``python -m icc_bench.cli``: the ``icc-bench`` command."""

import sys

from icc_bench.cli import main

sys.exit(main())
