"""Usage: tokens per day per model as stacked bars (pyqtgraph), and the per-model table from usage.report.

Both come from core.usage in one worker call; this window only draws. pyqtgraph is imported when the window
first opens, so the tray's start-up does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.accounting import usage
from ..core.serving import state
from ..core.system import clock
from . import dialogs

PERIODS = (("Last 7 days", 7), ("Last 30 days", 30), ("Last 90 days", 90))
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
COLUMNS = ("Model", "Requests", "Tokens in", "Tokens out", "Tokens/s", "Last used")


@dataclass(frozen=True)
class UsageData:
    report: usage.UsageReport
    days: list[date]
    series: dict[str, list[int]]  # model -> tokens (in + out) per day, aligned with days


def load(days: int) -> UsageData:
    """For a worker: the report and the per-day series for the last ``days`` days."""
    since = timedelta(days=days)
    report = usage.report(live_log=state.live_log(), since=since)
    first = (clock.now() - since).date() + timedelta(days=1)
    axis = [first + timedelta(days=i) for i in range(days)]
    index = {d: i for i, d in enumerate(axis)}
    series: dict[str, list[int]] = {}
    for row in usage.daily(live_log=None, since=since, ingest_first=False):
        if row.day in index:
            series.setdefault(row.model, [0] * len(axis))[index[row.day]] += row.tokens_in + row.tokens_out
    return UsageData(report=report, days=axis, series=series)


class UsageWindow(QWidget):
    def __init__(self, app):
        super().__init__()
        import pyqtgraph as pg

        self.app = app
        self.data: UsageData | None = None
        self.setObjectName("usage_window")
        self.setWindowTitle("Usage — aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(820, 560)
        self.period = QComboBox(objectName="period")
        for label, days in PERIODS:
            self.period.addItem(label, days)
        self.period.setCurrentIndex(1)
        self.period.currentIndexChanged.connect(self.reload)
        self.note = QLabel(objectName="note")
        top = QHBoxLayout()
        top.addWidget(self.period)
        top.addWidget(self.note, 1)

        pg.setConfigOptions(antialias=True, background="w", foreground="k")
        self.plot = pg.PlotWidget(objectName="chart")
        self.plot.setLabel("left", "tokens")
        self.plot.showGrid(y=True, alpha=0.3)
        self.legend = self.plot.addLegend(offset=(10, 10))
        self.table = QTableWidget(0, len(COLUMNS), objectName="table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot, 3)
        layout.addWidget(self.table, 2)
        self.reload()

    def reload(self) -> None:
        days = self.period.currentData()
        self.note.setText("Reading usage…")
        self.app.workers.submit(lambda job: load(days), name="usage", on_done=self.show_data, on_error=self._failed)

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint}".strip())

    def show_data(self, data: UsageData) -> None:
        import pyqtgraph as pg

        self.data = data
        self.plot.clear()
        self.legend.clear()
        x = list(range(len(data.days)))
        base = [0] * len(x)
        for i, (model, values) in enumerate(sorted(data.series.items())):
            # Named items join the plot's legend by themselves.
            bars = pg.BarGraphItem(
                x=x, height=values, y0=list(base), width=0.8, brush=COLOURS[i % len(COLOURS)], name=model
            )
            self.plot.addItem(bars)
            base = [b + v for b, v in zip(base, values)]
        step = max(1, len(x) // 10)
        ticks = [(i, d.strftime("%b %d")) for i, d in enumerate(data.days) if i % step == 0]
        self.plot.getAxis("bottom").setTicks([ticks])
        total = data.report.total
        self.note.setText(f"{total.requests} requests, {total.tokens_in + total.tokens_out:,} tokens")
        self._fill_table(data.report)

    def _fill_table(self, report: usage.UsageReport) -> None:
        self.table.setRowCount(len(report.models))
        for row, m in enumerate(report.models):
            speed = f"{m.mean_tok_per_sec:.1f}" if m.mean_tok_per_sec else "-"
            last = m.last_used.strftime("%Y-%m-%d %H:%M") if m.last_used else "-"
            values = (m.model, m.requests, m.tokens_in, m.tokens_out, speed, last)
            for col, value in enumerate(values):
                item = QTableWidgetItem(f"{value:,}" if isinstance(value, int) else str(value))
                if isinstance(value, int):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
