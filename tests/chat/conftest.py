"""Puts this folder on the import path, so the chat tests (and those of ``server/``) share
``reply_checks``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
