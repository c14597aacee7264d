"""Logging in: user names, password hashes, sessions and CSRF tokens, one-time codes, and the
rate limits and lockouts of logins (kept by the call-state service)."""
