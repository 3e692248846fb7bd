"""Usage: tokens per day per model as stacked bars (pyqtgraph), every day on the axis (a day without requests
is a 0, and the newest day is labelled), the per-model table from usage.report, and what the same tokens
would have cost on the cloud tiers: the table `aidevops-local usage` prints, from the same report.

Everything comes from core.usage in one worker call; this window only draws. pyqtgraph is imported when the
window first opens, so the tray's start-up does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from ..core.accounting.prices import format_usd
from ..core.serving import state
from ..core.system import clock
from . import dialogs
from .window_keys import close_on_escape

PERIODS = (("Last 7 days", 7), ("Last 30 days", 30), ("Last 90 days", 90))
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
COLUMNS = ("Model", "Requests", "Tokens in", "Tokens out", "Tokens/s", "Last used")
MAX_TICKS = 10
ZERO_LABELS_UP_TO = 31  # days: a longer period would drown its bars in zeros


@dataclass(frozen=True)
class UsageData:
    report: usage.UsageReport
    days: list[date]
    series: dict[str, list[int]]  # model -> tokens (in + out) per day, aligned with days
    names: dict[str, str] = field(default_factory=dict)  # model -> the name a person recognises, where known


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
    return UsageData(report=report, days=axis, series=series, names=_display_names())


def _display_names() -> dict[str, str]:
    """The models on disk by the name people know them by; a model since removed keeps its own name."""
    from ..core.models import library
    from ..core.models.display_names import display_names
    from ..core.system.errors import LocalModelsError

    try:
        return {name: shown.name for name, shown in display_names(library.list_models()).items()}
    except LocalModelsError:
        return {}


def day_ticks(days: list[date]) -> list[tuple[int, str]]:
    """At most about MAX_TICKS labels, evenly spaced, counted back from the newest day so that it always has
    one (the day a person looks for first)."""
    step = max(1, -(-len(days) // MAX_TICKS))
    return [(i, days[i].strftime("%b %d")) for i in range(len(days) - 1, -1, -step)][::-1]


def cost_rows(report: usage.UsageReport) -> list[list[str]]:
    """The CLI's cloud-cost table: a row per model and, with more than one, the total ("all")."""
    tiers = list(report.price_models)
    shown = report.models + ([report.total] if len(report.models) > 1 else [])
    return [[m.model] + [format_usd(m.cloud_cost_usd[t]) for t in tiers] for m in shown]


class UsageWindow(QWidget):
    def __init__(self, app):
        super().__init__()
        import pyqtgraph as pg

        self.app = app
        self.data: UsageData | None = None
        self.setObjectName("usage_window")
        self.setWindowTitle("Usage — aidevops Local Models")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(860, 720)
        self.period = QComboBox(objectName="period")
        self.period.setAccessibleName("Period")
        for label, days in PERIODS:
            self.period.addItem(label, days)
        self.period.setCurrentIndex(1)
        self.period.currentIndexChanged.connect(self.reload)
        self.note = QLabel(objectName="note")
        top = QHBoxLayout()
        top.addWidget(self.period)
        top.addWidget(self.note, 1)

        palette = self.palette()  # the chart follows the theme: dark text on light, light on dark
        pg.setConfigOptions(antialias=True, background=palette.base().color(), foreground=palette.text().color())
        self.plot = pg.PlotWidget(objectName="chart")
        self.plot.setLabel("left", "tokens")
        self.plot.showGrid(y=True, alpha=0.3)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.getAxis("bottom").setStyle(hideOverlappingLabels=False)
        self.plot.getPlotItem().setContentsMargins(
            0, 0, 24, 0
        )  # room for the newest day's label at the edge  # the newest day's label sits at the edge
        # A backdrop of the chart's own colour: the names stay readable where the legend covers tall bars.
        backdrop, rim = palette.base().color(), palette.mid().color()
        backdrop.setAlpha(220)
        self.legend = self.plot.addLegend(offset=(10, 10), brush=backdrop, pen=rim)
        self.table = self._table("table", COLUMNS, "Usage per model")
        self.cost_title = QLabel("The same tokens on the cloud tiers (locally: $0)", objectName="cost_title")
        self.cost_table = self._table("cost_table", ("Model",), "Cloud cost of the same tokens")
        self.prices_note = QLabel(objectName="prices_note", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.plot, 3)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.cost_title)
        layout.addWidget(self.cost_table, 2)
        layout.addWidget(self.prices_note)
        close_on_escape(self)
        self.reload()

    def _table(self, name: str, columns, accessible: str) -> QTableWidget:
        table = QTableWidget(0, len(columns), objectName=name)
        table.setHorizontalHeaderLabels(columns)
        table.verticalHeader().hide()
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        table.setTabKeyNavigation(False)  # Tab moves on to the next control, arrows move within
        table.setAccessibleName(accessible)
        return table

    def reload(self) -> None:
        days = self.period.currentData()
        self.note.setText("Reading usage…")
        self.asked = asked = getattr(self, "asked", 0) + 1  # a slower earlier period's answer is dropped
        self.app.workers.submit(
            lambda job: load(days),
            name="usage",
            on_done=lambda data: self.show_data(data) if asked == self.asked else None,
            on_error=self._failed,
        )

    def _failed(self, exc: BaseException) -> None:
        message, hint, _ = dialogs.error_text(exc)
        self.note.setText(f"{message} {hint}".strip())

    def show_data(self, data: UsageData) -> None:
        self.data = data
        self._draw(data)
        total = data.report.total
        self.note.setText(f"{total.requests:,} requests, {total.tokens_in + total.tokens_out:,} tokens")
        self._fill_table(data.report)
        self._fill_costs(data.report)

    def _draw(self, data: UsageData) -> None:
        import pyqtgraph as pg

        self.plot.clear()
        self.legend.clear()
        x = list(range(len(data.days)))
        base = [0] * len(x)
        for i, (model, values) in enumerate(sorted(data.series.items())):
            # Named items join the plot's legend by themselves; no outline, so an empty day draws no dash.
            bars = pg.BarGraphItem(
                x=x,
                height=values,
                y0=list(base),
                width=0.8,
                brush=COLOURS[i % len(COLOURS)],
                pen=None,
                name=data.names.get(model, model),
            )
            self.plot.addItem(bars)
            base = [b + v for b, v in zip(base, values)]
        if len(x) <= ZERO_LABELS_UP_TO:
            colour = self.palette().placeholderText().color()
            for i in (i for i, v in enumerate(base) if v == 0):
                label = pg.TextItem("0", color=colour, anchor=(0.5, 1.0))
                label.setPos(i, 0)
                self.plot.addItem(label)
        self.plot.setXRange(-0.6, len(x) - 0.4, padding=0)
        self.plot.setYRange(0, max(base, default=0) * 1.1 or 1, padding=0)
        self.plot.getAxis("bottom").setTicks([day_ticks(data.days)])

    def _fill_table(self, report: usage.UsageReport) -> None:
        shown = report.models + ([report.total] if len(report.models) > 1 else [])
        self.table.setRowCount(len(shown))
        for row, m in enumerate(shown):
            speed = f"{m.mean_tok_per_sec:.1f}" if m.mean_tok_per_sec else "not measured"
            last = m.last_used.astimezone().strftime("%Y-%m-%d %H:%M") if m.last_used else "never"
            values = (self._name(m.model), m.requests, m.tokens_in, m.tokens_out, speed, last)
            for col, value in enumerate(values):
                self._set(self.table, row, col, f"{value:,}" if isinstance(value, int) else str(value), col > 0)
        self.table.resizeColumnsToContents()

    def _fill_costs(self, report: usage.UsageReport) -> None:
        tiers = list(report.price_models)
        self.cost_table.setColumnCount(1 + len(tiers))
        self.cost_table.setHorizontalHeaderLabels(["Model", *tiers])
        for col, tier in enumerate(tiers, start=1):
            self.cost_table.horizontalHeaderItem(col).setToolTip(report.price_models[tier])
        rows = cost_rows(report)
        self.cost_table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for col, value in enumerate(values):
                self._set(self.cost_table, r, col, self._name(value) if col == 0 else value, col > 0)
        self.cost_table.resizeColumnsToContents()
        self.prices_note.setText(
            f"List prices as of {report.prices_as_of}: "
            + ", ".join(f"{t} = {name}" for t, name in report.price_models.items())
            + "."
        )

    def _name(self, model: str) -> str:
        return self.data.names.get(model, model) if self.data else model

    @staticmethod
    def _set(table: QTableWidget, row: int, col: int, text: str, right: bool) -> None:
        item = QTableWidgetItem(text)
        if right:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        table.setItem(row, col, item)
