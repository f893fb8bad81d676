"""Terminal output: data on stdout (JSON for scripts, Rich tables for people), messages on stderr.

Progress bars appear only when stderr is a terminal; Rich honours NO_COLOR.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table


class Output:
    def __init__(self, json_mode: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self._stdout = stdout or sys.stdout
        self.out = Console(file=self._stdout, soft_wrap=False)
        self.err = Console(file=stderr or sys.stderr, stderr=True, soft_wrap=True)

    def json(self, data: Any) -> None:
        """Exactly the API's `data`, one document, for jq."""
        self._stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        self._stdout.flush()

    def table(
        self, rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None
    ) -> None:
        """A Rich table of ``rows`` with (field, header) ``columns``."""
        table = Table(title=title, header_style="bold", show_lines=False)
        for i, (_, header) in enumerate(columns):
            table.add_column(header, overflow="fold", no_wrap=i == 0)  # ids stay whole, to copy
        for row in rows:
            table.add_row(*("" if row.get(k) is None else str(row.get(k)) for k, _ in columns))
        self.out.print(table)

    def record(self, data: dict[str, Any]) -> None:
        """One object as aligned `field  value` lines."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for k, v in data.items():
            if v is not None:
                table.add_row(k, str(v))
        self.out.print(table)

    def info(self, message: str) -> None:
        self.err.print(message, highlight=False)

    def error(self, message: str) -> None:
        self.err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)

    @contextmanager
    def progress(self, description: str, unit: str = "frames") -> Iterator[Any]:
        """A progress callback ``(done, total)``: a Rich bar with rate and ETA on a TTY, silent otherwise."""
        if not self.err.is_terminal:
            yield None
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        if unit == "bytes":
            columns: list[Any] = [DownloadColumn(), TransferSpeedColumn()]
        else:
            columns = [MofNCompleteColumn(), TextColumn(unit), TaskProgressColumn(), TextColumn("{task.fields[rate]}")]
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *columns,
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=None, rate="")

            def update(done: int, total: int | None) -> None:
                speed = bar.tasks[0].speed
                bar.update(task, completed=done, total=total, rate=f"{speed:.0f} {unit}/s" if speed else "")

            yield update
