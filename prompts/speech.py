"""Sentences composed of prompt names, right in each language.

Every function returns the ordered list of prompt NAMES to play; `PromptLibrary.compose` turns
them into media URIs. Choices worth knowing:
- Times: 24-hour clock in Finnish and Swedish ("kello neljätoista nolla viisi"), 12-hour in
  English ("at two oh five p.m."), which is how each language reads a clock aloud.
- Dates: today / yesterday / a weekday of the past six days, else weekday + date (+ year when it
  is not the current year). English dates read "Friday, August twelfth"; numbers use the British
  "and" ("one hundred and five").
- `when` and `now` must be in the same time zone (the user's local time); aware datetimes are
  converted to `now`'s zone.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from .catalogue import ACTIVITIES, LANGUAGES

_FI, _SV, _EN = LANGUAGES


def _check(lang: str) -> None:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")


# --- numbers ------------------------------------------------------------------------------


def number(lang: str, n: int) -> list[str]:
    """N (0…9999) in words: "num-20", "num-3" is "kaksikymmentäkolme" / "tjugotre" / "twenty three".

    Larger numbers are read digit by digit rather than failing a call.
    """
    _check(lang)
    if n < 0:
        raise ValueError(f"cannot say a negative number: {n}")
    if n > 9999:
        return digits(lang, str(n))
    if n == 0:
        return ["num-0"]
    thousands, hundreds, rest = n // 1000, n // 100 % 10, n % 100
    out: list[str] = []
    if thousands:
        out.append(f"num-{thousands * 1000}")
    if hundreds:
        out.append(f"num-{hundreds * 100}")
    if rest and out and lang == _EN:
        out.append("and")  # "one hundred and five", "two thousand and twenty"
    if rest > 20 and rest % 10:
        out += [f"num-{rest - rest % 10}", f"num-{rest % 10}"]
    elif rest:
        out.append(f"num-{rest}")
    return out


_PHONE_CHARS = {"+": "plus", "*": "star", "#": "hash", **{str(d): f"digit-{d}" for d in range(10)}}
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def digits(lang: str, phone: str) -> list[str]:
    """A phone number read digit by digit, "+" as "plus"; spaces, dashes and brackets are skipped."""
    _check(lang)
    cleaned = _PHONE_SEPARATORS.sub("", phone)
    bad = sorted({ch for ch in cleaned if ch not in _PHONE_CHARS})
    if bad or not cleaned:
        raise ValueError(f"not a phone number: {phone!r}")
    return [_PHONE_CHARS[ch] for ch in cleaned]


def _readable_number(caller: str | None) -> str | None:
    """The caller's number if it can be read out; withheld, anonymous or names give None."""
    if not caller:
        return None
    cleaned = _PHONE_SEPARATORS.sub("", caller)
    return cleaned if re.fullmatch(r"\+?[0-9]+", cleaned) else None


# --- message counts -----------------------------------------------------------------------


def _count(lang: str, n: int, kind: str) -> list[str]:
    # Only 1 is singular in all three languages ("21 uutta viestiä", "21 nya meddelanden").
    return [f"vm-{kind}-1"] if n == 1 else [*number(lang, n), f"vm-{kind}-n"]


def count_messages(lang: str, new: int, old: int) -> list[str]:
    """ "Sinulla on 1 uusi viesti ja 3 vanhaa viestiä." Zero counts are left out, or said plainly."""
    _check(lang)
    if new < 0 or old < 0:
        raise ValueError(f"negative message count: {new}, {old}")
    if not new and not old:
        return ["vm-no-messages"]
    if not new:
        # Finnish cannot join "ei uusia" to "on N vanhaa" in one sentence: two short ones.
        return ["vm-no-new-messages", "vm-you-have", *_count(lang, old, "old")]
    out = ["vm-you-have", *_count(lang, new, "new")]
    if old:
        out += ["and", *_count(lang, old, "old")]
    return out


# --- clock and calendar -------------------------------------------------------------------


def _same_zone(when: datetime, now: datetime) -> datetime:
    if when.tzinfo is not None and now.tzinfo is not None:
        return when.astimezone(now.tzinfo)
    return when


def _minutes(lang: str, minute: int, zero: str) -> list[str]:
    if minute == 0:
        return []
    return [zero, f"num-{minute}"] if minute < 10 else number(lang, minute)


def clock(lang: str, when: datetime, *, with_at: bool = True) -> list[str]:
    """ "kello neljätoista nolla viisi" / "klockan fjorton noll fem" / "at two oh five p.m." """
    _check(lang)
    at = ["at"] if with_at else []
    if lang == _EN:
        hour12 = when.hour % 12 or 12
        ampm = "time-am" if when.hour < 12 else "time-pm"
        return [*at, *number(lang, hour12), *_minutes(lang, when.minute, "time-oh"), ampm]
    return [*at, *number(lang, when.hour), *_minutes(lang, when.minute, "num-0")]


def _date(lang: str, day: date, now: date, *, until: bool = False) -> list[str]:
    """Weekday and date, with the year when it is not this year."""
    wd, d, m = day.isoweekday(), day.day, day.month
    year = number(lang, day.year) if day.year != now.year else []
    if lang == _FI:
        if until:  # "perjantaihin kahdenteentoista elokuuta"
            return [f"wd-until-{wd}", f"day-until-{d}", f"month-{m}", *year]
        return [f"wd-date-{wd}", f"day-{d}", f"month-{m}", *year]
    if lang == _SV:  # "fredagen den tolfte augusti"
        return [f"wd-date-{wd}", f"day-{d}", f"month-{m}", *year]
    weekday = f"wd-{wd}" if until else f"wd-date-{wd}"  # "(on) Friday, August twelfth"
    return [weekday, f"month-{m}", f"day-{d}", *year]


def datetime_phrase(lang: str, when: datetime, now: datetime) -> list[str]:
    """When something happened: "tänään kello 14.05", "i går klockan 9", "on Monday at 2:05 PM",
    or with a date for anything older than six days (or in the future)."""
    _check(lang)
    when = _same_zone(when, now)
    days_ago = (now.date() - when.date()).days
    if days_ago == 0:
        day = ["today"]
    elif days_ago == 1:
        day = ["yesterday"]
    elif 2 <= days_ago <= 6:
        day = [f"wd-on-{when.isoweekday()}"]
    else:
        day = _date(lang, when.date(), now.date())
    return [*day, *clock(lang, when)]


def _until_clock(lang: str, when: datetime) -> list[str]:
    if lang == _FI and when.minute == 0:
        return ["at", f"hour-until-{when.hour}"]  # "kello kuuteentoista (asti)"
    return clock(lang, when, with_at=lang != _EN)


def until_phrase(lang: str, when: datetime, now: datetime) -> list[str]:
    """Until when an activity lasts: the time today; "tomorrow" or the weekday within a week;
    else weekday and date. A time is added unless it is midnight.

    "perjantaihin kahdenteentoista elokuuta asti" / "till fredagen den tolfte augusti" /
    "until Friday, August twelfth"; today: "kello kuuteentoista asti" / "till klockan sexton" /
    "until four p.m.".
    """
    _check(lang)
    when = _same_zone(when, now)
    days_ahead = (when.date() - now.date()).days
    time = [] if (when.hour, when.minute) == (0, 0) and days_ahead != 0 else _until_clock(lang, when)
    if days_ahead == 0:
        day: list[str] = []
    elif days_ahead == 1:
        day = ["until-tomorrow"]
    elif 2 <= days_ahead <= 6:
        day = [f"wd-until-{when.isoweekday()}"]
    else:
        day = _date(lang, when.date(), now.date(), until=True)
    if lang == _EN and day and time:
        time = ["at", *time]  # "until tomorrow at four p.m."
    if lang == _FI:
        return [*day, *time, "until"]
    return ["until", *day, *time]


# --- sentences ----------------------------------------------------------------------------


def envelope(lang: str, caller: str | None, when: datetime, now: datetime) -> list[str]:
    """Said before each message: "Viesti numerosta <digits> vastaanotettu tänään kello 14.05"."""
    _check(lang)
    readable = _readable_number(caller)
    source = ["vm-message-from", *digits(lang, readable)] if readable else ["vm-unknown-caller"]
    return [*source, "vm-received-at", *datetime_phrase(lang, when, now)]


def default_greeting(lang: str, number_called: str | None) -> list[str]:
    """ "Tavoittelemasi numero <digits> ei juuri nyt vastaa. Jätä viesti äänimerkin jälkeen." """
    _check(lang)
    readable = _readable_number(number_called)
    return ["vm-default-greeting-pre", *(digits(lang, readable) if readable else []), "vm-default-greeting-post"]


def activity_sentence(lang: str, activity: str, until: datetime | None = None, now: datetime | None = None) -> list[str]:
    """ "Tavoittelemasi henkilö on lomalla perjantaihin kahdenteentoista elokuuta asti." """
    _check(lang)
    if activity not in ACTIVITIES:
        raise ValueError(f"no prompts for activity {activity!r}; known: {', '.join(ACTIVITIES)}")
    out = ["act-person-is", f"act-is-{activity}"]
    if until is not None:
        out += until_phrase(lang, until, now if now is not None else datetime.now(until.tzinfo))
    return out


def forward_set(lang: str, target: str) -> list[str]:
    """ "Puhelut siirretään numeroon <digits>." """
    return ["fc-forward-set", *digits(lang, target)]
