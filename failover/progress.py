"""A run's progress on a terminal: the step in flight with its elapsed time, a backup or
restore with its bytes and rate (rich), on stderr, and each step's line when it ends.
Used only when stdout is a terminal; cron and CI see the command's result and nothing
else."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING
from typing import Any

from failover import output

if TYPE_CHECKING:
    from failover.data.meter import Transfer


class StepProgress:
    """An ``on_step`` and ``on_transfer`` callback: a live line per step in flight
    (several moves of one round each have theirs), replaced by the step's result line
    when it ends, and one per backup or restore under way, with a bar when its size is
    known."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import Progress
        from rich.progress import SpinnerColumn
        from rich.progress import TextColumn
        from rich.progress import TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            _bar(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, step: str, status: str, detail: str) -> None:
        with self._lock:
            self._drop(step)
            if status == "in_progress":
                self._show(step, f"  {step}")
            self._idle()
        line = output.progress_line(step, status, detail)
        if line is not None and status != "in_progress":
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def transfer(self, report: Transfer) -> None:
        key = f"{report.service}:{report.kind}"
        with self._lock:
            if report.finished:
                self._drop(key)
                self._idle()
                return
            total = report.total if report.total and not report.estimated else None
            what = f"  {report.kind} {report.service}  {report.text()}"
            if key in self._tasks:
                self.progress.update(
                    self._tasks[key], description=what, completed=report.done, total=total
                )
            else:
                self._show(key, what, completed=report.done, total=total, metered=True)

    def _show(self, key: str, description: str, **fields: Any) -> None:
        if not self._tasks:
            self.progress.start()
        completed, total = fields.pop("completed", 0), fields.pop("total", None)
        self._tasks[key] = self.progress.add_task(
            description, completed=completed, total=total, **fields
        )

    def _drop(self, key: str) -> None:
        done = self._tasks.pop(key, None)
        if done is not None:
            self.progress.remove_task(done)

    def _idle(self) -> None:
        if not self._tasks:
            self.progress.stop()

    def close(self) -> None:
        with self._lock:
            self._tasks.clear()
            self.progress.stop()


def _bar() -> Any:
    """A bar for a backup or restore of known size; nothing for a step."""
    from rich.progress import BarColumn
    from rich.progress import Task
    from rich.text import Text

    class MeteredBar(BarColumn):
        def render(self, task: Task) -> Any:
            if not task.fields.get("metered") or task.total is None:
                return Text("")
            return super().render(task)

    return MeteredBar(bar_width=24)
