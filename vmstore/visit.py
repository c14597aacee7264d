"""One caller's pass through a folder of a mailbox (the access menus' "listen to new messages").

The folder is listed once, when the visit starts; from then on the visit keeps its own list in
step with what it changes itself (a delete or a move to Old shifts the numbers of later messages
down by one, as the store compacts the folder). Before a message plays, one envelope read checks
it is still where the visit thinks; only when someone else changed the folder meanwhile does that
cost a scan of the folder.

A heard INBOX message moves to Old when the caller leaves it (next, previous, back to the menu,
hang-up: see `close`), not while the caller is still on it, so replaying or deleting it costs no
renumbering of two folders.

Blocking: every method but `heard` touches the spool; call them off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from .store import Message, MessageNotFound, VoicemailStore


@dataclass
class _Entry:
    message: Message  # where the message is, as far as this visit knows
    heard: bool = False


class FolderVisit:
    def __init__(self, store: VoicemailStore, context: str, mailbox: str, folder: str) -> None:
        self.context = context
        self.mailbox = mailbox
        self.folder = folder
        self.changed = False  # something moved or went: message waiting needs a refresh
        self._store = store
        self._entries = [_Entry(m) for m in store.list(context, mailbox, folder)]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def messages(self) -> list[Message]:
        """Every message of the visit, where the visit believes it is now."""
        return [entry.message for entry in self._entries]

    def message(self, index: int) -> Message | None:
        """The message at `index`, as it is now. None if someone else deleted it meanwhile: it
        then leaves the visit, and `index` names the message after it."""
        entry = self._entries[index]
        now = self._store.current(entry.message)
        if now is None:
            del self._entries[index]
            return None
        entry.message = now
        return now

    def heard(self, index: int) -> None:
        """The caller heard the message: it becomes old once they leave it. No spool access."""
        self._entries[index].heard = True

    def leave(self, index: int) -> None:
        """The caller moves on from the message at `index`: if it was heard in INBOX, to Old."""
        entry = self._entries[index]
        if not entry.heard or entry.message.folder != "INBOX":
            return
        before = entry.message
        try:
            entry.message = self._store.mark_old(before)
        except MessageNotFound:  # deleted by someone else: `message` drops it when it comes up
            entry.heard = False
            return
        self.changed = True
        self._closed_gap(before)

    def delete(self, index: int) -> None:
        """Delete the message at `index`; `index` then names the message after it."""
        entry = self._entries.pop(index)
        removed = self._store.delete(entry.message)
        if removed is not None:
            self.changed = True
            self._closed_gap(removed)

    def close(self) -> bool:
        """The caller leaves the folder (or hangs up): heard messages not yet moved go to Old.
        True if the visit changed the mailbox."""
        for index in range(len(self._entries)):
            self.leave(index)
        return self.changed

    def _closed_gap(self, gone: Message) -> None:
        # The store compacted `gone`'s folder: every later message there moved down by one.
        for entry in self._entries:
            m = entry.message
            if m.folder == gone.folder and m.number > gone.number:
                entry.message = m.renumbered(m.number - 1)
