"""Terminal output: data on stdout (JSON for scripts, Rich tables for people), messages on stderr.

Progress bars appear only when stderr is a terminal; Rich honours NO_COLOR.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

# C0/C1 control characters (ESC, BEL, CR, newline...): user text (file names, ids, avatar names, a server's
# data) must not move the cursor, recolour the terminal or split a one-line message or a table row
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(value: Any) -> Text:
    """``value`` as literal text for Rich: no markup (`[/]` in a file name crashed it), no control codes."""
    return Text(_CONTROL.sub("?", str(value)))


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
        self,
        rows: Sequence[dict[str, Any]],
        columns: Sequence[tuple[str, str]],
        title: str | None = None,
        wrap: Collection[str] | None = None,
    ) -> None:
        """A Rich table of ``rows`` with (field, header) ``columns``.

        With ``wrap`` (the free-text fields), one line per row: ids and dates stay whole so they can be
        copied, in a table without side borders to leave them the width; only free text is cut short.
        """
        if wrap is None:
            table = Table(title=title, header_style="bold", show_lines=False)
            for i, (_, header) in enumerate(columns):
                table.add_column(header, overflow="fold", no_wrap=i == 0)  # ids stay whole, to copy
        else:
            from rich import box

            table = Table(
                title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
            )
            # free text is cut short with an ellipsis (the whole text is in `get`); the rest keep their width
            whole = {f: max([len(h)] + [len(str(r.get(f) or "")) for r in rows]) for f, h in columns}
            spare = self.out.width - sum(w for f, w in whole.items() if f not in wrap) - 2 * len(columns)
            for field, header in columns:
                if field in wrap:
                    width = max(8, spare // max(1, len([f for f, _ in columns if f in wrap])))
                    table.add_column(header, overflow="ellipsis", no_wrap=True, max_width=width)
                else:
                    table.add_column(header, no_wrap=True, min_width=whole[field])
        for row in rows:
            table.add_row(*(plain("" if row.get(k) is None else row.get(k)) for k, _ in columns))
        self.out.print(table)

    def record(self, data: dict[str, Any]) -> None:
        """One object as aligned `field  value` lines."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for k, v in data.items():
            if v is not None:
                table.add_row(k, plain(v))
        self.out.print(table)

    def info(self, message: str) -> None:
        self.err.print(plain(message), highlight=False)

    def error(self, message: str) -> None:
        self.err.print(Text("error:", style="bold red") + Text(" ") + plain(message), highlight=False, soft_wrap=True)

    @contextmanager
    def progress(self, description: str, unit: str = "frames") -> Iterator[Any]:
        """A progress callback ``(done, total)``: a Rich bar with rate and ETA on a TTY, silent otherwise.

        The bar appears at the first report, not before: input checks that fail first show only
        their error, with no progress line flashing ahead of it.
        """
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
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            *columns,
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        )
        task = None

        def update(done: int, total: int | None) -> None:
            nonlocal task
            if task is None:
                bar.start()
                task = bar.add_task(description, total=None, rate="")
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:.0f} {unit}/s" if speed else "")

        try:
            yield update
        finally:
            if task is not None:
                bar.stop()
