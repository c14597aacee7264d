"""Voicemail storage on Asterisk's standard app_voicemail spool (see store.py), message waiting
(mwi.py) and the crash-safe handoff of ARI recordings (journal.py)."""

from .envelope import Envelope, new_msg_id
from .journal import RecordingJournal, deliver_orphans, deliver_recording
from .locks import StoreBusy
from .mwi import refresh_mwi
from .store import Message, MessageNotFound, StoreFull, VoicemailStore

__all__ = [
    "Envelope",
    "Message",
    "MessageNotFound",
    "RecordingJournal",
    "StoreBusy",
    "StoreFull",
    "VoicemailStore",
    "deliver_orphans",
    "deliver_recording",
    "new_msg_id",
    "refresh_mwi",
]
