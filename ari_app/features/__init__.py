"""Feature codes dialled from a device (987 forward, *43# call waiting) and the in-call transfer."""
