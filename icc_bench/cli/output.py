"""What every command prints through: the consoles, the one progress display, warnings on one line."""

from __future__ import annotations

import contextlib
import statistics
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress

# Leaderboards are wide: when the output is not a terminal (a log, a pipe), render at 160 columns
# rather than rich's default 80, which would fold every number.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def warn(message: str) -> None:
    """``warning: <message>`` on stderr, one line."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


class Progress:
    """The progress display of every command: a rich bar per stage (what, bar, done of total,
    elapsed, remaining, and what it is at now), fed by the drivers' progress calls.

    - any loop (analyses, ``import``): ``start(total, done, description)``, then ``advance(info)``
      per item; each ``start`` adds a bar (``import``: validating, then writing);
    - training (:func:`icc_bench.population.train_population`): ``start``, ``model_started(job)``,
      ``epoch(job, stats)`` (a second bar, the current model's epochs), ``model_done(job, record)``;
    - measuring (:func:`icc_bench.evaluate.evaluate_zoo`): ``start``, ``model(model_id)``,
      ``value(model_id, measure, status)``;
    - both drivers: ``waiting(n_models)`` while another process holds the rest of the work.

    ``unit`` names the first bar ("models", "measures"); ``doing`` says what the other process is
    doing while this one waits ("training", "measuring"); ``transient`` clears the bars at the end.
    """

    def __init__(self, console: Console, unit: str = "items", *, doing: str = "working on", transient: bool = False):
        self.unit = unit
        self.doing = doing
        self.progress = _RichProgress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=transient,
        )
        self.task = None
        self.epoch_task = None

    def __enter__(self) -> Progress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    # -- any loop -------------------------------------------------------------------------------
    def start(self, total: int, done: int = 0, description: str | None = None) -> None:
        self.task = self.progress.add_task(description or self.unit, total=total, completed=done, info="")

    def advance(self, info: str = "") -> None:
        self.progress.update(self.task, advance=1, info=info)

    def waiting(self, n_models: int) -> None:
        if self.epoch_task is not None:
            self.progress.update(self.epoch_task, visible=False)
        self.progress.update(self.task, info=f"waiting for {n_models} model(s) another process is {self.doing}")

    # -- training -------------------------------------------------------------------------------
    def model_started(self, job) -> None:
        if self.epoch_task is None:
            self.epoch_task = self.progress.add_task("  epochs", total=1, completed=0, info="", visible=False)
        self.progress.reset(self.epoch_task, total=job.schedule.epochs, completed=0, visible=True, info=job.model_id)

    def epoch(self, job, stats) -> None:
        test = "-" if stats.test_accuracy is None else f"{stats.test_accuracy:.3f}"  # untested epoch: Schedule.test_every
        self.progress.update(
            self.epoch_task, completed=stats.epoch,
            info=f"{job.model_id}  loss {stats.train_loss:.3g}  train {stats.train_accuracy:.3f}  test {test}",
        )

    def model_done(self, job, record) -> None:
        self.progress.update(self.task, advance=1, info=f"last: {job.model_id} test {record['test_accuracy']:.3f}")

    # -- measuring ------------------------------------------------------------------------------
    def model(self, model_id: str) -> None:
        self.progress.update(self.task, info=model_id)

    def value(self, model_id: str, measure: str, status: str) -> None:
        self.advance(f"{model_id}  {measure}" + ("" if status == "ok" else f" ({status})"))


def _spread(values: list[float]) -> str:
    return f"min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"


def print_train_summary(summary) -> None:
    records = summary.records
    console.print(
        f"[bold]{escape(summary.population)}[/]: {len(records)}/{summary.total} models in the zoo "
        f"({summary.trained} trained now in {summary.seconds:.0f} s, {summary.already_done} already there"
        + (f", {summary.trained_elsewhere} trained meanwhile by another process" if summary.trained_elsewhere else "")
        + (f", {len(summary.refused)} refused" if summary.refused else "")
        + (f", {summary.remaining} still missing" if summary.remaining else "") + ")"
    )
    if not records:
        return
    train = [r["train_accuracy"] for r in records]
    test = [r["test_accuracy"] for r in records]
    console.print(f"  train accuracy  {_spread(train)}")
    console.print(f"  test accuracy   {_spread(test)}")
    stopped = sum(bool(r.get("reached_loss_stop")) for r in records)
    console.print(f"  {stopped}/{len(records)} stopped at the training-loss threshold")
    # The paper's regime (SPEC §4): do the models fit, and does test accuracy spread beyond its noise?
    from icc_bench.regime import population_regime

    regime = population_regime(records)
    console.print(f"  regime: {regime.summary()}", highlight=False, soft_wrap=True)
    if regime.warning():
        console.print(f"  [yellow]warning:[/] {summary.population} is {regime.warning()}", highlight=False, soft_wrap=True)


def print_measured(stats, zoo) -> None:
    """The one line that closes the measuring of a zoo."""
    console.print(
        f"measured: {stats.computed} values computed, {stats.reused} reused from {zoo.root / 'results.sqlite'}"
        + (f", {stats.errors} errors" if stats.errors else "")
        + (f", {stats.not_applicable} not applicable" if stats.not_applicable else "")
        + f" ({stats.seconds:.0f} s)", highlight=False,
    )


def training_progress() -> Progress:
    return Progress(console, "models", doing="training")


def measuring_progress() -> Progress:
    return Progress(console, "measures", doing="measuring")


@contextlib.contextmanager
def warnings_on_one_line():
    """icc-bench's own warnings (e.g. an unsealed zoo) as one ``warning:`` line; others as Python shows them."""
    import warnings

    from icc_bench.zoo import ZooWarning

    with warnings.catch_warnings():
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ZooWarning):
                warn(str(message))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        yield
