"""Suites: named lists of populations, evaluated and scored together.

A measure that ranks one population well may fail on the next (PGDL reported every task beside
the average; Dziugaite et al. 2020 argue for the worst case over environments). A suite names the
populations to look at together, in a small TOML file, ``model_zoo/suites/<name>.toml``::

    name = "laptop"                                  # optional; must match the file name
    description = "The embedded populations"
    populations = ["quick", "mini", "digits_mini"]   # population spec names, in display order

Suites are looked up by name in the ``suites/`` folder of every folder that population specs are
looked up in (:func:`icc_bench.population.spec_dirs`: ``$ICC_BENCH_SPECS``, ``./model_zoo``, the
package's), or read from a path. Loading validates the file (pydantic: unknown fields, an empty or
repeated population) and checks that every population names a spec, with "did you mean".

``icc-bench evaluate --suite NAME`` and ``icc-bench leaderboard --suite NAME`` use them
(:mod:`icc_bench.cli.suite`); :func:`icc_bench.api.open_suite` opens one from Python; the
suite leaderboard is built by :mod:`icc_bench.suite_scores`.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from icc_bench.config import SpecError

#: The folder, under each population spec folder, that holds the suites.
SUITES_FOLDER = "suites"


class SuiteError(SpecError):
    """A suite that cannot be used; the message names the file, the field or name, and the fix."""


class SuiteSpec(BaseModel):
    """One suite: a name, a description and the populations it scores together, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    populations: list[str] = Field(min_length=1, description="population spec names, in display order")

    @field_validator("populations")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"population {repeated[0]!r} is listed twice; list each population once")
        return names


def suite_dirs() -> list[Path]:
    """Where suites are looked up by name: ``suites/`` in each population spec folder."""
    from icc_bench.population import spec_dirs

    return [d / SUITES_FOLDER for d in spec_dirs() if (d / SUITES_FOLDER).is_dir()]


def available_suites() -> dict[str, Path]:
    """Suite name -> file, the first folder of :func:`suite_dirs` winning."""
    found: dict[str, Path] = {}
    for d in suite_dirs():
        for path in sorted(d.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def load_suite(path: str | Path, *, check_populations: bool = True) -> SuiteSpec:
    """Read and validate one suite file.

    ``check_populations`` also checks that each population names a spec that
    :func:`icc_bench.population.find_spec` finds by name.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SuiteError(f"{path}: no such suite file") from None
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: not valid TOML ({e}); fix the syntax at that position") from None
    if raw.setdefault("name", path.stem) != path.stem:
        raise SuiteError(f"{path}: name {raw['name']!r} differs from the file name; suites are looked up by file name, so rename one of them")
    try:
        suite = SuiteSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {e.error_count() - 1} more problems)" if e.error_count() > 1 else ""
        raise SuiteError(f"{path}: field '{field}': {first['msg']}{more}") from None
    if check_populations:
        _check_populations(suite, path)
    return suite


def _check_populations(suite: SuiteSpec, path: Path) -> None:
    from icc_bench.population import available_specs

    specs = available_specs()
    for name in suite.populations:
        if name not in specs:
            close = difflib.get_close_matches(name, list(specs), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise SuiteError(
                f"{path}: population '{name}' names no population spec; {hint}"
                f"known: {', '.join(specs) or 'none'} (see `icc-bench populations`)"
            )


def find_suite(name_or_path: str) -> SuiteSpec:
    """A suite by name (``laptop``) or by path (``my/suite.toml``), validated."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        return load_suite(path)
    suites = available_suites()
    if name_or_path not in suites:
        close = difflib.get_close_matches(name_or_path, list(suites), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        looked = ", ".join(str(d) for d in suite_dirs()) or "no suites/ folder beside any population spec"
        raise SuiteError(
            f"no suite named '{name_or_path}'{hint} Known: {', '.join(suites) or 'none'} "
            f"(looked in {looked}); or pass the path of a suite .toml file"
        )
    return load_suite(suites[name_or_path])
