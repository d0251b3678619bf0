"""Leaderboard files: every format, each written atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from icc_bench.files import atomic_write_bytes
from icc_bench.leaderboard.csv_table import to_csv
from icc_bench.leaderboard.markdown import to_markdown
from icc_bench.leaderboard.model import Leaderboard, to_json
from icc_bench.leaderboard.page import to_html

FORMATS: tuple[str, ...] = ("md", "csv", "json", "html")


def write_leaderboard(
    lb: Leaderboard, out_dir: Path, stem: str, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """Write ``out_dir/stem.<format>`` for each format, each atomically; return the paths in order."""
    # The figures of `icc-bench analyze` beside the page (the default out_dir is the zoo, where they live).
    analysis_dir = Path(out_dir) / "analysis"
    analyses = sorted(p.relative_to(out_dir).as_posix() for p in analysis_dir.glob("*.png")) if analysis_dir.is_dir() else []
    renderers = {"md": to_markdown, "csv": to_csv, "json": to_json, "html": lambda lb: to_html(lb, analyses=analyses)}
    return write_formats(lb, renderers, out_dir, stem, formats)


def write_formats(
    board: Any, renderers: dict[str, Callable[[Any], str]], out_dir: Path, stem: str, formats: tuple[str, ...]
) -> list[Path]:
    """Write ``out_dir/stem.<format>`` of ``board`` for each format, each atomically; the paths in order.
    Checks every format before writing any."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown leaderboard format(s) {unknown}; pick from {FORMATS}.")
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{stem}.{fmt}"
        atomic_write_bytes(path, renderers[fmt](board).encode("utf-8"))
        paths.append(path)
    return paths
