"""Voicemail storage on Asterisk's standard app_voicemail spool (see store.py), message waiting
(mwi.py), one caller's pass through a folder (visit.py), where ARI records (recordings.py) and the
crash-safe handoff of ARI recordings into mailboxes (journal.py)."""

from .envelope import Envelope, new_msg_id
from .journal import BadEntry, RecordingJournal, deliver_orphans, deliver_recording
from .locks import StoreBusy
from .mwi import refresh_mwi
from .recordings import Recordings
from .store import Message, MessageNotFound, StoreFull, VoicemailStore, playback_name
from .visit import FolderVisit

__all__ = [
    "BadEntry",
    "Envelope",
    "FolderVisit",
    "Message",
    "MessageNotFound",
    "RecordingJournal",
    "Recordings",
    "StoreBusy",
    "StoreFull",
    "VoicemailStore",
    "deliver_orphans",
    "deliver_recording",
    "new_msg_id",
    "playback_name",
    "refresh_mwi",
]
