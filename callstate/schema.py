"""The schema, as numbered migrations. Append, never edit: a file that has seen migration N
will never run it again.

Portable SQL only (SQLite and PostgreSQL): VARCHAR/INTEGER/SMALLINT/TEXT, booleans as SMALLINT
0/1, instants as fixed-width UTC text (`times.py`). `{identity_pk}` is the one word that differs
and is filled in from the backend's dialect. Users live in the YAML, not here, so there are no
foreign keys: a row is keyed by (tenant_id, user_id), and "no row" means "the defaults".

"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "voicemail settings, PIN lockout, audit log", (
        """CREATE TABLE voicemail_settings (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            play_activity SMALLINT NOT NULL CHECK (play_activity IN (0, 1)),
            press1_number VARCHAR(16),
            notify_sms SMALLINT NOT NULL CHECK (notify_sms IN (0, 1)),
            notify_email SMALLINT NOT NULL CHECK (notify_email IN (0, 1)),
            always_ask_pin SMALLINT NOT NULL CHECK (always_ask_pin IN (0, 1)),
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
        # The PINs themselves stay in the YAML; only the failure counter and the lock live here.
        """CREATE TABLE pin_lockout (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            failures INTEGER NOT NULL CHECK (failures >= 0),
            locked_until VARCHAR(32),
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
        # One row per changed field or per PIN event; `field` is namespaced ("voicemail.notify_sms",
        # later "forward.busy", "presence.activity") so every issue shares this one table.
        """CREATE TABLE audit_log (
            id {identity_pk},
            at VARCHAR(32) NOT NULL,
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            actor VARCHAR(200) NOT NULL,
            source VARCHAR(32) NOT NULL,
            event VARCHAR(32) NOT NULL,
            field VARCHAR(64) NOT NULL,
            old_value TEXT,
            new_value TEXT
        )""",
        "CREATE INDEX audit_log_user ON audit_log (tenant_id, user_id, id)",
    )),
    Migration(2, "forwards and call waiting", (
        # One row per user who changed anything; NULL in a column means "the default" (which
        # depends on the YAML, e.g. on the "No voicemail" group), so a default follows the YAML.
        # A forward column holds 'voicemail', 'none' or an E.164 number.
        """CREATE TABLE call_routing (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            fwd_immediate VARCHAR(16),
            fwd_busy VARCHAR(16),
            fwd_no_answer VARCHAR(16),
            fwd_unreachable VARCHAR(16),
            no_answer_seconds INTEGER CHECK (no_answer_seconds BETWEEN 5 AND 120),
            call_waiting SMALLINT CHECK (call_waiting IN (0, 1)),
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
    )),
    Migration(3, "presence: activity, end time, note", (
        # No row: Available with no note. An end time in the past reads as Available, so no timer
        # has to survive a restart; the app's timer only tidies the row and tells Asterisk.
        """CREATE TABLE presence (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            activity VARCHAR(32) NOT NULL,
            until_at VARCHAR(32),
            note VARCHAR(400) NOT NULL,
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
        "CREATE INDEX presence_until ON presence (until_at)",
    )),
    Migration(4, "escalating PIN lockout", (
        # Added with defaults, so rows of an older database read as "level 0, not held". The
        # level counts locks since the last success or unlock; held: locked until unlocked.
        "ALTER TABLE pin_lockout ADD COLUMN lock_level INTEGER NOT NULL DEFAULT 0 CHECK (lock_level >= 0)",
        "ALTER TABLE pin_lockout ADD COLUMN held SMALLINT NOT NULL DEFAULT 0 CHECK (held IN (0, 1))",
    )),
    Migration(5, "home page accounts and sessions", (
        # No row: the user has not chosen a password yet (first login goes through a code).
        """CREATE TABLE web_accounts (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            password_hash VARCHAR(200) NOT NULL,
            password_set_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
        # Server-side sessions: the cookie carries a random token, the table its SHA-256 only, so
        # a copy of the database opens no session.
        """CREATE TABLE web_sessions (
            token_hash VARCHAR(64) PRIMARY KEY,
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            csrf_token VARCHAR(64) NOT NULL,
            source VARCHAR(64) NOT NULL,
            created_at VARCHAR(32) NOT NULL,
            seen_at VARCHAR(32) NOT NULL,
            idle_until VARCHAR(32) NOT NULL,
            ends_at VARCHAR(32) NOT NULL
        )""",
        "CREATE INDEX web_sessions_user ON web_sessions (tenant_id, user_id)",
        "CREATE INDEX web_sessions_idle ON web_sessions (idle_until)",
    )),
    Migration(6, "home page login codes and login lockouts", (
        # One code per user: a new one replaces the old. Only an argon2 hash of the code is kept;
        # once the code is right, `ticket_hash` (SHA-256 of a random token) lets the user choose
        # a password until `expires_at`.
        """CREATE TABLE web_login_codes (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            code_hash VARCHAR(200) NOT NULL,
            attempts INTEGER NOT NULL CHECK (attempts >= 0),
            ticket_hash VARCHAR(64),
            created_at VARCHAR(32) NOT NULL,
            expires_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
        "CREATE INDEX web_login_codes_ticket ON web_login_codes (ticket_hash)",
        # Counters and locks: scope 'user' (subject 'tenant/user') and 'address' (a client
        # address) count failed logins; 'send_user' and 'send_address' count codes sent.
        """CREATE TABLE web_login_limits (
            scope VARCHAR(16) NOT NULL,
            subject VARCHAR(200) NOT NULL,
            failures INTEGER NOT NULL CHECK (failures >= 0),
            window_start VARCHAR(32) NOT NULL,
            locked_until VARCHAR(32),
            lock_level INTEGER NOT NULL CHECK (lock_level >= 0),
            held SMALLINT NOT NULL CHECK (held IN (0, 1)),
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (scope, subject)
        )""",
        "CREATE INDEX web_login_limits_updated ON web_login_limits (updated_at)",
    )),
    Migration(7, "call recording on or off", (
        # No row: recording off (the default). The recordings are files in the spool.
        """CREATE TABLE recording_settings (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            enabled SMALLINT NOT NULL CHECK (enabled IN (0, 1)),
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
    )),
    Migration(8, "fax: receiving on or off, where it is e-mailed, the faxes received", (
        # No row: fax off, sent to the user's YAML e-mail once turned on.
        """CREATE TABLE fax_settings (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            enabled SMALLINT NOT NULL CHECK (enabled IN (0, 1)),
            email VARCHAR(254),
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
        # One row per fax call; `delivery` is the e-mail's state (pending, sent, failed, none).
        """CREATE TABLE fax_received (
            id {identity_pk},
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            received_at VARCHAR(32) NOT NULL,
            caller VARCHAR(64) NOT NULL,
            remote_id VARCHAR(64) NOT NULL,
            pages INTEGER NOT NULL CHECK (pages >= 0),
            status VARCHAR(16) NOT NULL,
            error VARCHAR(200) NOT NULL,
            tiff VARCHAR(400) NOT NULL,
            email VARCHAR(254),
            delivery VARCHAR(16) NOT NULL,
            attempts INTEGER NOT NULL CHECK (attempts >= 0),
            next_at VARCHAR(32) NOT NULL,
            delivery_error VARCHAR(200) NOT NULL
        )""",
        "CREATE INDEX fax_received_user ON fax_received (tenant_id, user_id, received_at)",
        "CREATE INDEX fax_received_due ON fax_received (delivery, next_at)",
    )),
    Migration(9, "conference room PINs and their lockout", (
        # No row: the owner has not set a PIN yet and the room is closed. The lockout columns are
        # those of pin_lockout, for the room's own counter.
        """CREATE TABLE conference_rooms (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            pin VARCHAR(16) NOT NULL,
            failures INTEGER NOT NULL CHECK (failures >= 0),
            locked_until VARCHAR(32),
            lock_level INTEGER NOT NULL CHECK (lock_level >= 0),
            held SMALLINT NOT NULL CHECK (held IN (0, 1)),
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id)
        )""",
    )),
    Migration(10, "personal contacts of the home page", (
        # A user's own address book; the id is random (never a counter another user could guess).
        """CREATE TABLE personal_contacts (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            contact_id VARCHAR(16) NOT NULL,
            name VARCHAR(80) NOT NULL,
            number VARCHAR(16) NOT NULL,
            note VARCHAR(200) NOT NULL,
            updated_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (tenant_id, user_id, contact_id)
        )""",
    )),
    Migration(11, "call log", (
        # One row per user and call (Asterisk's linkedid + "/in" or "/out"), merged from the
        # call's CDRs (callstate/calllog.py). kind_rank orders the outcomes of one call, so a later
        # or repeated record never lowers it.
        """CREATE TABLE call_log (
            tenant_id VARCHAR(64) NOT NULL,
            user_id VARCHAR(64) NOT NULL,
            call_id VARCHAR(72) NOT NULL,
            started_at VARCHAR(32) NOT NULL,
            kind VARCHAR(16) NOT NULL,
            kind_rank SMALLINT NOT NULL,
            duration INTEGER NOT NULL CHECK (duration >= 0),
            party_number VARCHAR(40) NOT NULL,
            party_name VARCHAR(80) NOT NULL,
            target VARCHAR(40) NOT NULL,
            PRIMARY KEY (tenant_id, user_id, call_id)
        )""",
        # The page: one user's calls newest first, in keyset pages of (started_at, call_id).
        "CREATE INDEX call_log_user ON call_log (tenant_id, user_id, started_at, call_id)",
        # Pruning by age.
        "CREATE INDEX call_log_started ON call_log (started_at)",
    )),
)
