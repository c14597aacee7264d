"""The conference room PIN tests of the call-state service, again on a real PostgreSQL."""

from pgserver import rerun_on_postgresql, unit_module

pytest_plugins = ("pgserver",)
globals().update(rerun_on_postgresql(unit_module("test_callstate_conference")))
