"""Logging in: user names, password hashes, sessions and CSRF tokens."""
