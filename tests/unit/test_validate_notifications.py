"""platform.notifications: gateways are optional, every value is checked, pairs are required."""

from __future__ import annotations

from pathlib import Path

from asterisk_conf.validate import load_config, validate_files
from base.model import Notifications


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text("platform:\n  notifications:\n" + body + "tenants: []\n", encoding="utf-8")
    return str(path)


def test_defaults_mean_sms_and_email_are_off(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("tenants: []\n")
    assert load_config([str(path)]).platform.notifications == Notifications()
    assert Notifications().sms_url is None and Notifications().smtp_host is None


def test_full_settings_load(tmp_path: Path) -> None:
    config = load_config([write(tmp_path, (
        "    timezone: Europe/Stockholm\n    retry_backoff: [5, 30]\n    retry_max_attempts: 3\n"
        "    sms_url: http://127.0.0.1:13013/cgi-bin/sendsms\n    sms_username: vipbx\n"
        '    sms_sender: "+358201243100"\n    smtp_host: mail.operator.example\n    smtp_port: 587\n'
        "    smtp_sender: voicemail@operator.example\n    smtp_starttls: true\n    smtp_username: vipbx\n"
    ))])
    n = config.platform.notifications
    assert (n.timezone, n.retry_backoff, n.retry_max_attempts) == ("Europe/Stockholm", (5, 30), 3)
    assert (n.sms_username, n.sms_sender, n.smtp_port, n.smtp_starttls) == ("vipbx", "+358201243100", 587, True)


def test_every_bad_value_is_reported_with_line_and_key(tmp_path: Path) -> None:
    problems = validate_files([write(tmp_path, (
        "    timezone: Mars/Base\n"
        '    retry_backoff: [10, "x"]\n'
        '    sms_url: "http://x/sendsms\\n[vipbx]"\n'
        "    smtp_host: mail.example\n"
        '    smtp_starttls: "yes"\n'
        "    smtp_sender: not-an-address\n"
        "    bogus: 1\n"
    ))])
    found = {(p.line, p.key) for p in problems}
    assert (3, "platform.notifications.timezone") in found
    assert (4, "platform.notifications.retry_backoff[1]") in found
    assert (5, "platform.notifications.sms_url") in found
    assert (7, "platform.notifications.smtp_starttls") in found
    assert (8, "platform.notifications.smtp_sender") in found
    assert (9, "platform.notifications.bogus") in found
    assert any(p.key == "platform.notifications.sms_username" and "missing" in p.message for p in problems)
