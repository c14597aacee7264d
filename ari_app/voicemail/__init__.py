"""The voicemail plugin: leaving messages (deposit) and the shared access number (access)."""
