"""A run's progress on a terminal: the step in flight with its elapsed time (rich), on
stderr, and each step's line when it ends. Used only when stdout is a terminal; cron
and CI see the command's result and nothing else."""

from __future__ import annotations

import threading
from typing import Any

from failover import output


class StepProgress:
    """An ``on_step`` callback: a live line per step in flight (several moves of one
    round each have theirs), replaced by the step's result line when it ends."""

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
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, step: str, status: str, detail: str) -> None:
        with self._lock:
            done = self._tasks.pop(step, None)
            if done is not None:
                self.progress.remove_task(done)
            if status == "in_progress":
                if not self._tasks:
                    self.progress.start()
                self._tasks[step] = self.progress.add_task(f"  {step}")
            elif not self._tasks:
                self.progress.stop()
        line = output.progress_line(step, status, detail)
        if line is not None and status != "in_progress":
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        with self._lock:
            self._tasks.clear()
            self.progress.stop()
