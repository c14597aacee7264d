"""FastAGI server: what happens to a call to a user now."""
