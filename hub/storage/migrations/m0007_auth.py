"""Schema 7: login sessions, API keys, password-change flag, audit log lookups."""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=7,
    name="auth",
    statements=[
        # A first admin's printed one-time password, or a reset by an admin,
        # must be replaced before the account does anything else.
        "ALTER TABLE users ADD COLUMN must_change_password {BOOL} NOT NULL DEFAULT FALSE",
        "ALTER TABLE users ADD COLUMN password_changed_at {TS}",
        "ALTER TABLE users ADD COLUMN last_login_at {TS}",
        "ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT ''",
        # Only hashes of the cookie token and of the CSRF token are stored: a
        # copy of the database does not let anyone ride a session.
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at {TS} NOT NULL,
            last_seen_at {TS} NOT NULL,
            expires_at {TS} NOT NULL,
            csrf_hash TEXT NOT NULL,
            remote_addr TEXT
        )""",
        "CREATE INDEX sessions_user ON sessions (user_id)",
        "CREATE INDEX sessions_expires ON sessions (expires_at)",
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            secret_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            jurisdictions {JSON} NOT NULL DEFAULT '[]',
            created_by TEXT NOT NULL,
            created_at {TS} NOT NULL,
            last_used_at {TS},
            revoked_at {TS}
        )""",
        "CREATE INDEX audit_log_actor ON audit_log (actor, at)",
        "CREATE INDEX audit_log_action ON audit_log (action, at)",
    ],
)
