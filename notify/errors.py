"""The one failure type gateways raise when they know more than "it failed"."""

from __future__ import annotations


class DeliveryError(Exception):
    """A gateway refused or could not take a message.

    `permanent`: retrying cannot help (a refused recipient, a malformed number), so the notifier
    gives up at once instead of spending its retries. Any other exception counts as temporary.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
