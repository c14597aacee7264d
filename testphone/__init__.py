"""A second Asterisk acting as every user's SIP device and as the carrier, driven over its ARI."""

from testphone.config import PhoneSettings, render_phone_config
from testphone.driver import Call, CallEnded, TestPhone
from testphone.instance import PhoneInstance

__all__ = ["Call", "CallEnded", "PhoneInstance", "PhoneSettings", "TestPhone", "render_phone_config"]
