"""Presence: the activity-change number, Asterisk presence states for subscribed phones, the end-time
timer and the activity sentence of voicemail greetings."""
