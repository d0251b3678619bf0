"""The version of icc-bench (``icc_bench.__version__``), in a module of its own: every record,
results row and leaderboard names it, and none of their writers should import the package's API
to read it."""

__version__ = "0.1.0"
