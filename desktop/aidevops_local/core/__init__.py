"""The Qt-free core: every capability the CLI and the tray share. Never imports PySide6 or, at import
time, huggingface_hub (status must stay fast)."""
