//! The console's state: one SQLite file (users, sessions, operations and their logs, the audit
//! log), migrated forward on open. `PRAGMA user_version` counts the migrations applied.
//!
//! rusqlite is synchronous; every statement here is short, so callers hold the connection's
//! mutex briefly instead of moving work to blocking threads.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

/// Applied in order; never edit one that has shipped, add the next.
const MIGRATIONS: &[&str] = &[r"
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
        created INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created INTEGER NOT NULL,
        last_seen INTEGER NOT NULL
    );
    CREATE TABLE login_failures (
        key TEXT NOT NULL,
        at INTEGER NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures (key, at);
    CREATE TABLE operations (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        user TEXT NOT NULL,
        started INTEGER NOT NULL,
        finished INTEGER,
        result TEXT NOT NULL DEFAULT 'running'
            CHECK (result IN ('running', 'succeeded', 'failed', 'interrupted'))
    );
    CREATE TABLE operation_lines (
        operation_id INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (operation_id, seq)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        user TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        result TEXT NOT NULL
    );
"];

#[derive(Debug, thiserror::Error)]
#[error("the console database: {0}")]
pub struct DbError(#[from] rusqlite::Error);

pub struct Db {
    connection: Mutex<Connection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    pub created: i64,
    pub last_seen: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Operation {
    pub id: i64,
    pub kind: String,
    pub target: String,
    pub user: String,
    pub started: i64,
    pub finished: Option<i64>,
    pub result: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Line {
    pub seq: i64,
    pub at: i64,
    pub line: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub at: i64,
    pub user: String,
    pub action: String,
    pub target: String,
    pub result: String,
}

fn operation(row: &rusqlite::Row<'_>) -> rusqlite::Result<Operation> {
    Ok(Operation {
        id: row.get(0)?,
        kind: row.get(1)?,
        target: row.get(2)?,
        user: row.get(3)?,
        started: row.get(4)?,
        finished: row.get(5)?,
        result: row.get(6)?,
    })
}

impl Db {
    /// Opens (creating, 0600) and migrates the database.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let connection = Connection::open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Db::migrate(connection)
    }

    pub fn in_memory() -> Result<Db, DbError> {
        Db::migrate(Connection::open_in_memory()?)
    }

    fn migrate(mut connection: Connection) -> Result<Db, DbError> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode NORMAL keeps the database consistent on a crash; only the last commits
        // before a power loss may be lost (a session's last-seen time, say), and commits no
        // longer wait for the disk.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", true)?;
        let applied: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (index, migration) in (0i64..).zip(MIGRATIONS).skip(applied.max(0) as usize) {
            let tx = connection.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", index + 1)?;
            tx.commit()?;
        }
        // Operations cut short by a stop of the console stay in the history as interrupted.
        connection.execute(
            "UPDATE operations SET result = 'interrupted' WHERE result = 'running'",
            [],
        )?;
        Ok(Db {
            connection: Mutex::new(connection),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn user_count(&self) -> Result<i64, DbError> {
        Ok(self
            .lock()
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
    }

    pub fn add_user(
        &self,
        name: &str,
        password_hash: &str,
        role: Role,
        now: i64,
    ) -> Result<i64, DbError> {
        let connection = self.lock();
        connection.execute(
            "INSERT INTO users (name, password_hash, role, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, password_hash, role.as_str(), now],
        )?;
        Ok(connection.last_insert_rowid())
    }

    /// Adds the first user, an admin, only while there is none: two browsers racing through
    /// the first-run setup cannot both win.
    pub fn add_first_admin(
        &self,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let changed = self.lock().execute(
            "INSERT INTO users (name, password_hash, role, created)
             SELECT ?1, ?2, 'admin', ?3 WHERE NOT EXISTS (SELECT 1 FROM users)",
            params![name, password_hash, now],
        )?;
        Ok(changed == 1)
    }

    pub fn users(&self) -> Result<Vec<User>, DbError> {
        let connection = self.lock();
        let mut statement = connection.prepare("SELECT id, name, role FROM users ORDER BY name")?;
        let users = statement
            .query_map([], |r| {
                Ok(User {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    role: Role::parse(&r.get::<_, String>(2)?).unwrap_or(Role::Viewer),
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(users)
    }

    /// The user and their password hash.
    pub fn credentials(&self, name: &str) -> Result<Option<(User, String)>, DbError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, name, role, password_hash FROM users WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        User {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            role: Role::parse(&r.get::<_, String>(2)?).unwrap_or(Role::Viewer),
                        },
                        r.get(3)?,
                    ))
                },
            )
            .optional()?)
    }

    pub fn set_role(&self, name: &str, role: Role) -> Result<bool, DbError> {
        Ok(self.lock().execute(
            "UPDATE users SET role = ?2 WHERE name = ?1",
            params![name, role.as_str()],
        )? == 1)
    }

    pub fn add_session(
        &self,
        token_sha256: &str,
        user_id: i64,
        csrf: &str,
        now: i64,
    ) -> Result<(), DbError> {
        self.lock().execute(
            "INSERT INTO sessions (token_sha256, user_id, csrf, created, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![token_sha256, user_id, csrf, now],
        )?;
        Ok(())
    }

    pub fn session(&self, token_sha256: &str) -> Result<Option<Session>, DbError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT u.id, u.name, u.role, s.csrf, s.created, s.last_seen
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = ?1",
                [token_sha256],
                |r| {
                    Ok(Session {
                        user: User {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            role: Role::parse(&r.get::<_, String>(2)?).unwrap_or(Role::Viewer),
                        },
                        csrf: r.get(3)?,
                        created: r.get(4)?,
                        last_seen: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn touch_session(&self, token_sha256: &str, now: i64) -> Result<(), DbError> {
        self.lock().execute(
            "UPDATE sessions SET last_seen = ?2 WHERE token_sha256 = ?1",
            params![token_sha256, now],
        )?;
        Ok(())
    }

    pub fn end_session(&self, token_sha256: &str) -> Result<(), DbError> {
        self.lock().execute(
            "DELETE FROM sessions WHERE token_sha256 = ?1",
            [token_sha256],
        )?;
        Ok(())
    }

    pub fn record_login_failure(&self, key: &str, now: i64) -> Result<(), DbError> {
        self.lock().execute(
            "INSERT INTO login_failures (key, at) VALUES (?1, ?2)",
            params![key, now],
        )?;
        Ok(())
    }

    pub fn login_failures_since(&self, key: &str, since: i64) -> Result<i64, DbError> {
        Ok(self.lock().query_row(
            "SELECT count(*) FROM login_failures WHERE key = ?1 AND at >= ?2",
            params![key, since],
            |r| r.get(0),
        )?)
    }

    pub fn clear_login_failures(&self, key: &str) -> Result<(), DbError> {
        self.lock()
            .execute("DELETE FROM login_failures WHERE key = ?1", [key])?;
        Ok(())
    }

    pub fn audit(
        &self,
        now: i64,
        user: &str,
        action: &str,
        target: &str,
        result: &str,
    ) -> Result<(), DbError> {
        self.lock().execute(
            "INSERT INTO audit (at, user, action, target, result) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now, user, action, target, result],
        )?;
        Ok(())
    }

    pub fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT at, user, action, target, result FROM audit ORDER BY id DESC LIMIT ?1",
        )?;
        let entries = statement
            .query_map([limit], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    user: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    result: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(entries)
    }

    pub fn start_operation(
        &self,
        kind: &str,
        target: &str,
        user: &str,
        now: i64,
    ) -> Result<i64, DbError> {
        let connection = self.lock();
        connection.execute(
            "INSERT INTO operations (kind, target, user, started) VALUES (?1, ?2, ?3, ?4)",
            params![kind, target, user, now],
        )?;
        Ok(connection.last_insert_rowid())
    }

    pub fn finish_operation(&self, id: i64, succeeded: bool, now: i64) -> Result<(), DbError> {
        self.lock().execute(
            "UPDATE operations SET finished = ?2, result = ?3 WHERE id = ?1",
            params![id, now, if succeeded { "succeeded" } else { "failed" }],
        )?;
        Ok(())
    }

    /// Appends a line to an operation's log; its sequence number.
    pub fn append_line(&self, id: i64, now: i64, line: &str) -> Result<i64, DbError> {
        Ok(self.lock().query_row(
            "INSERT INTO operation_lines (operation_id, seq, at, line)
             VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM operation_lines
                          WHERE operation_id = ?1), ?2, ?3)
             RETURNING seq",
            params![id, now, line],
            |r| r.get(0),
        )?)
    }

    pub fn operation(&self, id: i64) -> Result<Option<Operation>, DbError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, kind, target, user, started, finished, result
                 FROM operations WHERE id = ?1",
                [id],
                operation,
            )
            .optional()?)
    }

    pub fn operations(&self, limit: i64) -> Result<Vec<Operation>, DbError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT id, kind, target, user, started, finished, result
             FROM operations ORDER BY id DESC LIMIT ?1",
        )?;
        let operations = statement
            .query_map([limit], operation)?
            .collect::<Result<_, _>>()?;
        Ok(operations)
    }

    pub fn lines_after(&self, id: i64, after: i64) -> Result<Vec<Line>, DbError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT seq, at, line FROM operation_lines
             WHERE operation_id = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let lines = statement
            .query_map(params![id, after], |r| {
                Ok(Line {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    line: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_running_operations_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.db");
        {
            let db = Db::open(&path).unwrap();
            assert!(db.add_first_admin("ada", "hash", 1).unwrap());
            assert!(
                !db.add_first_admin("eve", "hash", 1).unwrap(),
                "only the first"
            );
            let id = db
                .start_operation("backup create", "lab", "ada", 2)
                .unwrap();
            assert_eq!(db.append_line(id, 3, "one").unwrap(), 1);
            assert_eq!(db.append_line(id, 3, "two").unwrap(), 2);
        }
        let db = Db::open(&path).unwrap();
        assert_eq!(db.user_count().unwrap(), 1);
        let operation = db.operations(10).unwrap().remove(0);
        assert_eq!(operation.result, "interrupted");
        let lines = db.lines_after(operation.id, 1).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, "two");
    }
}
