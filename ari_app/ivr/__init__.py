"""The toolkit the IVRs (voicemail access, the activity number) are built from: a caller's side
of the conversation (`Ivr`), login by own number or number + PIN with the lockout (`Login`), and
menus as tables of key → action (`Menu`). See docs/architecture.md."""

from .login import LOGIN_TRIES, Login, LoginPrompts
from .menu import MENU_REPEATS, Action, Goodbye, Menu, leave
from .pins import PinGate, pin_gate
from .talk import KEY_TIMEOUT, Ivr

__all__ = [
    "KEY_TIMEOUT",
    "LOGIN_TRIES",
    "MENU_REPEATS",
    "Action",
    "Goodbye",
    "Ivr",
    "Login",
    "LoginPrompts",
    "Menu",
    "PinGate",
    "leave",
    "pin_gate",
]
