"""`vipbx backup` and `vipbx restore`: the call-state database and the voicemail spool in one
archive, copied consistently while calls run, and put back whole or not at all (docs/backup.md)."""

from base.progress import SILENT, Progress

from .archive import Manifest
from .create import make_backup
from .errors import BackupError, Refused, plural
from .restore import restore_backup

__all__ = ["SILENT", "BackupError", "Manifest", "Progress", "Refused", "make_backup", "plural", "restore_backup"]
