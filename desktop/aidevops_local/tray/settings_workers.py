"""Settings' workers part: other machines whose memory the server pools (core/rpc), added as user@host (SSH,
the safe way) or host:port (a network the user trusts), each testable before saving: the test reaches it
the way a start would (starting it over SSH, opening the tunnel, asking its memory) and closes it again."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget, QPushButton, QVBoxLayout

from ..core.system import config, settings_checks

EXPLAIN = (
    "A model too big for this machine can put layers on these (llama.cpp's RPC server: run "
    "“aidevops-local worker start” there). user@host goes through SSH with your keys; host:port goes straight "
    "there, for a network you trust."
)


def test_worker(spec: str) -> str:
    """For the jobs pool: reach one worker as a start would, and say what it offers (or why not)."""
    from ..core.llamacpp import runtime
    from ..core.rpc import pool

    reached = pool.connect([spec], binary=runtime.find_llama_server())
    try:
        if not reached.members:
            return reached.left_out[0] if reached.left_out else f"{spec}: no answer"
        member = reached.members[0]
        gib = member.free_bytes / (1 << 30)
        return f"{spec} answers: {len(member.devices)} device(s), {gib:.1f} GiB free."
    finally:
        reached.close()


class WorkersBox(QGroupBox):
    def __init__(self, submit):
        """``submit``: the tray's job pool's submit, for the test (it runs ssh and llama-server)."""
        super().__init__("Workers (other machines)")
        self.setObjectName("workers")
        self.submit = submit
        self.list = QListWidget(objectName="worker_list")
        self.list.setAccessibleName("Workers")
        self.list.setMaximumHeight(80)
        self.entry = QLineEdit(objectName="worker_entry", placeholderText="me@studio.local or 192.168.1.20:50052")
        self.entry.setAccessibleName("A worker to add")
        self.add = QPushButton("&Add", objectName="add_worker")
        self.test = QPushButton("&Test", objectName="test_worker")
        self.remove = QPushButton("&Remove", objectName="remove_worker")
        self.said = QLabel(objectName="worker_note", wordWrap=True)
        explain = QLabel(EXPLAIN, wordWrap=True)
        row = QHBoxLayout()
        row.addWidget(self.entry, 1)
        for button in (self.add, self.test, self.remove):
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(explain)
        layout.addWidget(self.list)
        layout.addLayout(row)
        layout.addWidget(self.said)
        self.add.clicked.connect(self.add_entry)
        self.entry.returnPressed.connect(self.add_entry)
        self.remove.clicked.connect(self.remove_selected)
        self.test.clicked.connect(self.test_selected)
        self.list.currentRowChanged.connect(lambda _row: self._update())
        self._update()

    def show_settings(self, settings: config.Settings) -> None:
        self.list.clear()
        self.list.addItems(settings.workers)
        self._update()

    def settings_from(self, settings: config.Settings) -> config.Settings:
        return replace(settings, workers=self.workers())

    def workers(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def add_entry(self) -> None:
        text = self.entry.text().strip()
        if problem := settings_checks.worker_problem(text):
            self.said.setText(f"{text or 'That'} is {problem}. {settings_checks.WORKER_HINT}")
            return
        if text not in self.workers():
            self.list.addItem(text)
        self.list.setCurrentRow(self.workers().index(text))
        self.entry.clear()
        self.said.setText(f"Added {text}. Save, and the next start uses it; Test reaches it now.")

    def remove_selected(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            gone = self.list.takeItem(row).text()
            self.said.setText(f"Removed {gone}. Save to keep the change.")
        self._update()

    def test_selected(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        spec = item.text()
        self.test.setEnabled(False)
        self.said.setText(f"Reaching {spec}…")
        self.submit(lambda job: test_worker(spec), name="test-worker", on_done=self._tested, on_error=self._failed)

    def _tested(self, line: str) -> None:
        self.said.setText(line)
        self._update()

    def _failed(self, exc: BaseException) -> None:
        self.said.setText(f"{getattr(exc, 'message', exc)} {getattr(exc, 'hint', '')}".strip())
        self._update()

    def _update(self) -> None:
        chosen = self.list.currentRow() >= 0
        self.test.setEnabled(chosen)
        self.remove.setEnabled(chosen)
