"""Schema 12: departments, their members, department tasks, task history and photos.

- departments: who is dispatched to (kind, jurisdictions served, contacts, sinks);
- department_members: which users and API keys act for a department
  (`user:<name>` / `key:<name>`, one department each);
- department_tasks: one department's part of one alarm, with its stored deadlines
  (the SLA loop compares them with the time, so a restart loses no deadline);
- department_task_history: append-only, one row per task revision;
- department_task_photos: feedback photos (type-checked, size-capped on upload).
"""

from hub.storage.migration import Migration

__all__ = ["MIGRATION"]

MIGRATION = Migration(
    version=12,
    name="departments",
    statements=[
        """CREATE TABLE departments (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            jurisdictions {JSON} NOT NULL DEFAULT '[]',
            jurisdiction_paths {JSON} NOT NULL DEFAULT '[]',
            contacts {JSON} NOT NULL DEFAULT '[]',
            sinks {JSON} NOT NULL DEFAULT '[]',
            supervisor TEXT,
            enabled {BOOL} NOT NULL DEFAULT TRUE,
            created_at {TS} NOT NULL,
            updated_at {TS} NOT NULL
        )""",
        """CREATE TABLE department_members (
            member TEXT PRIMARY KEY,
            department_id TEXT NOT NULL REFERENCES departments (id) ON DELETE CASCADE,
            added_at {TS} NOT NULL
        )""",
        "CREATE INDEX department_members_department ON department_members (department_id)",
        """CREATE TABLE department_tasks (
            id TEXT PRIMARY KEY,
            alarm_id TEXT NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
            department_id TEXT NOT NULL REFERENCES departments (id),
            priority SMALLINT NOT NULL,
            state TEXT NOT NULL,
            jurisdiction_path TEXT,
            instructions TEXT NOT NULL DEFAULT '',
            dispatched_at {TS} NOT NULL,
            report_in_due {TS} NOT NULL,
            on_site_due {TS} NOT NULL,
            feedback_due {TS} NOT NULL,
            reported_in_at {TS},
            on_site_at {TS},
            feedback_at {TS},
            finished_at {TS},
            feedback TEXT,
            escalation_level INTEGER NOT NULL DEFAULT 0,
            next_escalation_at {TS},
            sent_back INTEGER NOT NULL DEFAULT 0,
            missed {JSON} NOT NULL DEFAULT '[]',
            revision INTEGER NOT NULL DEFAULT 1,
            updated_at {TS} NOT NULL,
            UNIQUE (alarm_id, department_id)
        )""",
        "CREATE INDEX department_tasks_department ON department_tasks (department_id, state)",
        "CREATE INDEX department_tasks_dispatched ON department_tasks (dispatched_at)",
        """CREATE INDEX department_tasks_open ON department_tasks (state, escalation_level)
            WHERE state IN ('dispatched', 'reported_in', 'on_site')""",
        """CREATE TABLE department_task_history (
            id {ID},
            task_id TEXT NOT NULL REFERENCES department_tasks (id) ON DELETE CASCADE,
            alarm_id TEXT NOT NULL,
            at {TS} NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            note TEXT,
            details {JSON} NOT NULL DEFAULT '{{}}',
            revision INTEGER NOT NULL
        )""",
        "CREATE INDEX department_task_history_task ON department_task_history (task_id, id)",
        """CREATE TABLE department_task_photos (
            id {UUID} PRIMARY KEY,
            task_id TEXT NOT NULL REFERENCES department_tasks (id) ON DELETE CASCADE,
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            data {BLOB} NOT NULL,
            uploaded_by TEXT NOT NULL,
            uploaded_at {TS} NOT NULL
        )""",
        "CREATE INDEX department_task_photos_task ON department_task_photos (task_id, uploaded_at)",
    ],
)
