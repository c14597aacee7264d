"""The home page's login limits and codes (call-state tests), again on a real PostgreSQL."""

from pgserver import rerun_on_postgresql, unit_module

pytest_plugins = ("pgserver",)
globals().update(rerun_on_postgresql(unit_module("test_callstate_web_logins")))
