//! The SQLite database: schema, migrations, queries and exports.
//!
//! The schema version is SQLite's `user_version`. [`MIGRATIONS`] is an ordered list;
//! opening an older database applies the missing steps in one transaction, and a
//! database from a newer Basis is refused rather than misread.

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::json;

use crate::reward::{reward, RewardConfig};
use crate::{Event, EventKind, FeedbackError, Suggestion};

/// The migrations, in order; step `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: suggestions and their events.
    "CREATE TABLE suggestions (
        id TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL,
        skill TEXT NOT NULL,
        model_name TEXT NOT NULL,
        model_version TEXT NOT NULL,
        workspace TEXT,
        file TEXT,
        language TEXT,
        prompt TEXT NOT NULL,
        completion TEXT NOT NULL,
        logprob_sum REAL NOT NULL,
        token_count INTEGER NOT NULL,
        latency_ms INTEGER NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        suggestion_id TEXT NOT NULL REFERENCES suggestions(id) ON DELETE CASCADE,
        time_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_by_suggestion ON events(suggestion_id);",
    // 2: persistent counters (records dropped under load) and a skill/time index.
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE INDEX suggestions_by_skill ON suggestions(skill, created_ms);",
    // 3: the token ids and per-token behaviour log-probs (JSON), for off-policy training.
    "ALTER TABLE suggestions ADD COLUMN tokens TEXT;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A connection to the feedback database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub suggestions: u64,
    pub events: u64,
    /// Records dropped because the writer's queue was full.
    pub dropped: u64,
    pub by_skill: Vec<SkillStats>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkillStats {
    pub skill: String,
    pub suggestions: u64,
    pub shown: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub executed: u64,
    pub mean_reward: Option<f64>,
}

const SUGGESTION_COLUMNS: &str = "id, created_ms, skill, model_name, model_version, workspace, file, language, prompt, completion, logprob_sum, token_count, latency_ms, tokens";

fn row_to_suggestion(r: &rusqlite::Row<'_>) -> rusqlite::Result<Suggestion> {
    Ok(Suggestion {
        id: r.get(0)?,
        created_ms: r.get(1)?,
        skill: r.get(2)?,
        model_name: r.get(3)?,
        model_version: r.get(4)?,
        workspace: r.get(5)?,
        file: r.get(6)?,
        language: r.get(7)?,
        prompt: r.get(8)?,
        completion: r.get(9)?,
        logprob_sum: r.get(10)?,
        token_count: r.get(11)?,
        latency_ms: r.get::<_, i64>(12)? as u64,
        tokens: r
            .get::<_, Option<String>>(13)?
            .and_then(|t| serde_json::from_str(&t).ok()),
    })
}

impl Store {
    /// `<basis_home>/feedback/feedback.sqlite3`.
    pub fn default_path(basis_home: &Path) -> PathBuf {
        basis_home.join("feedback").join("feedback.sqlite3")
    }

    /// Opens (creating) the database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store, FeedbackError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| FeedbackError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|e| sql(path, e))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, e: rusqlite::Error) -> FeedbackError {
        sql(&self.path, e)
    }

    fn configure(&mut self) -> Result<(), FeedbackError> {
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(|e| self.err(e))?;
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            )
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), FeedbackError> {
        let found: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if found > SCHEMA_VERSION {
            return Err(FeedbackError::NewerSchema {
                path: self.path.clone(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql(&path, e))?;
        for step in &MIGRATIONS[found as usize..] {
            tx.execute_batch(step).map_err(|e| sql(&path, e))?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| sql(&path, e))?;
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, FeedbackError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    pub(crate) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub fn insert_suggestion(&mut self, s: &Suggestion) -> Result<(), FeedbackError> {
        s.check_confined()?;
        insert_suggestion(&self.conn, s).map_err(|e| self.err(e))
    }

    pub fn insert_event(&mut self, e: &Event) -> Result<(), FeedbackError> {
        insert_event(&self.conn, e).map_err(|err| match err {
            EventError::Unknown => FeedbackError::UnknownSuggestion(e.suggestion_id.clone()),
            EventError::Sql(s) => self.err(s),
        })
    }

    pub fn suggestion(&self, id: &str) -> Result<Option<Suggestion>, FeedbackError> {
        self.conn
            .query_row(
                &format!("SELECT {SUGGESTION_COLUMNS} FROM suggestions WHERE id = ?1"),
                [id],
                row_to_suggestion,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A suggestion's events, oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<Event>, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT time_ms, data FROM events WHERE suggestion_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (time_ms, data) = row.map_err(|e| self.err(e))?;
            // A row this build cannot read (written by a newer one) is skipped.
            if let Ok(kind) = serde_json::from_str::<EventKind>(&data) {
                out.push(Event {
                    suggestion_id: id.to_string(),
                    time_ms,
                    kind,
                });
            }
        }
        Ok(out)
    }

    pub fn add_dropped(&mut self, n: u64) -> Result<(), FeedbackError> {
        add_dropped(&self.conn, n).map_err(|e| self.err(e))
    }

    fn suggestion_ids(&self) -> Result<Vec<String>, FeedbackError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM suggestions ORDER BY created_ms, id")
            .map_err(|e| self.err(e))?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| self.err(e))?;
        Ok(ids)
    }

    pub fn stats(&self) -> Result<Stats, FeedbackError> {
        let count = |q: &str| -> Result<u64, FeedbackError> {
            self.conn
                .query_row(q, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(|e| self.err(e))
        };
        let suggestions = count("SELECT COUNT(*) FROM suggestions")?;
        let events = count("SELECT COUNT(*) FROM events")?;
        let dropped = count("SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'dropped'")?;
        let mut by_skill: Vec<SkillStats> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT s.skill, COUNT(DISTINCT s.id),
                        SUM(e.kind = 'shown'), SUM(e.kind IN ('accepted', 'partially_accepted')),
                        SUM(e.kind = 'rejected'), SUM(e.kind = 'executed')
                     FROM suggestions s LEFT JOIN events e ON e.suggestion_id = s.id
                     GROUP BY s.skill ORDER BY s.skill",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    let n = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(0) as u64);
                    Ok(SkillStats {
                        skill: r.get(0)?,
                        suggestions: n(1)?,
                        shown: n(2)?,
                        accepted: n(3)?,
                        rejected: n(4)?,
                        executed: n(5)?,
                        mean_reward: None,
                    })
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                by_skill.push(row.map_err(|e| self.err(e))?);
            }
        }
        let cfg = RewardConfig::default();
        let mut sums: std::collections::HashMap<String, (f64, u64)> = Default::default();
        self.for_each_suggestion(&mut |s, events| {
            if let Some(r) = reward(&events, &cfg) {
                let e = sums.entry(s.skill).or_default();
                e.0 += r;
                e.1 += 1;
            }
            Ok(())
        })?;
        for s in &mut by_skill {
            s.mean_reward = sums.get(&s.skill).map(|(sum, n)| sum / *n as f64);
        }
        Ok(Stats {
            suggestions,
            events,
            dropped,
            by_skill,
        })
    }

    /// Calls `f` with every suggestion (oldest first) and its events.
    pub fn for_each_suggestion(
        &self,
        f: &mut dyn FnMut(Suggestion, Vec<Event>) -> Result<(), FeedbackError>,
    ) -> Result<(), FeedbackError> {
        for id in self.suggestion_ids()? {
            if let Some(s) = self.suggestion(&id)? {
                f(s, self.events(&id)?)?;
            }
        }
        Ok(())
    }

    /// One `basis.feedback/1` line per suggestion; returns how many.
    pub fn export_jsonl(
        &self,
        out: &mut dyn Write,
        cfg: &RewardConfig,
    ) -> Result<u64, FeedbackError> {
        let mut n = 0;
        self.for_each_suggestion(&mut |s, events| {
            let mut v = serde_json::to_value(&s).expect("a suggestion serializes");
            let obj = v.as_object_mut().expect("a suggestion is an object");
            obj.insert("schema".into(), json!("basis.feedback/1"));
            obj.insert("reward".into(), json!(reward(&events, cfg)));
            let evs: Vec<serde_json::Value> = events
                .iter()
                .map(|e| {
                    let mut k = serde_json::to_value(&e.kind).expect("an event serializes");
                    k["time_ms"] = json!(e.time_ms);
                    k
                })
                .collect();
            obj.insert("events".into(), json!(evs));
            writeln!(out, "{v}").map_err(FeedbackError::Export)?;
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }

    /// The unpaired form KTO trainers read: `{"prompt", "completion", "label"}` per
    /// suggestion with a decisive reward; texts stored as hashes are left out.
    pub fn export_kto(
        &self,
        out: &mut dyn Write,
        cfg: &RewardConfig,
    ) -> Result<u64, FeedbackError> {
        let mut n = 0;
        self.for_each_suggestion(&mut |s, events| {
            if s.prompt.starts_with("sha256:") && s.prompt.contains(" len:") {
                return Ok(());
            }
            let Some(r) = reward(&events, cfg) else {
                return Ok(());
            };
            let line = json!({
                "prompt": s.prompt,
                "completion": s.completion,
                "label": r >= cfg.label_threshold,
            });
            writeln!(out, "{line}").map_err(FeedbackError::Export)?;
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }

    /// Deletes suggestions created before `before_ms` (all when `None`) with their
    /// events, then compacts the file. Returns how many suggestions went.
    pub fn purge(&mut self, before_ms: Option<i64>) -> Result<u64, FeedbackError> {
        let n = match before_ms {
            Some(t) => self
                .conn
                .execute("DELETE FROM suggestions WHERE created_ms < ?1", [t]),
            None => self.conn.execute("DELETE FROM suggestions", []),
        }
        .map_err(|e| self.err(e))?;
        self.conn.execute_batch("VACUUM").map_err(|e| self.err(e))?;
        Ok(n as u64)
    }
}

fn sql(path: &Path, source: rusqlite::Error) -> FeedbackError {
    FeedbackError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn insert_suggestion(conn: &Connection, s: &Suggestion) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO suggestions ({SUGGESTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        s.id,
        s.created_ms,
        s.skill,
        s.model_name,
        s.model_version,
        s.workspace,
        s.file,
        s.language,
        s.prompt,
        s.completion,
        s.logprob_sum,
        s.token_count,
        s.latency_ms as i64,
        s.tokens.as_ref().map(|t| serde_json::to_string(t).expect("tokens serialise")),
    ])?;
    Ok(())
}

pub(crate) enum EventError {
    Unknown,
    Sql(rusqlite::Error),
}

pub(crate) fn insert_event(conn: &Connection, e: &Event) -> Result<(), EventError> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM suggestions WHERE id = ?1)")
        .and_then(|mut s| s.query_row([&e.suggestion_id], |r| r.get(0)))
        .map_err(EventError::Sql)?;
    if !exists {
        return Err(EventError::Unknown);
    }
    let data = serde_json::to_string(&e.kind).expect("an event serializes");
    conn.prepare_cached(
        "INSERT INTO events (suggestion_id, time_ms, kind, data) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![e.suggestion_id, e.time_ms, e.kind.name(), data]))
    .map_err(EventError::Sql)?;
    Ok(())
}

pub(crate) fn add_dropped(conn: &Connection, n: u64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('dropped', ?1)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        [n as i64],
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn suggestion(id: &str, skill: &str, created_ms: i64) -> Suggestion {
        Suggestion {
            id: id.into(),
            created_ms,
            skill: skill.into(),
            model_name: "smollm2".into(),
            model_version: "base".into(),
            workspace: Some(std::env::temp_dir().display().to_string()),
            file: Some("src/a.py".into()),
            language: Some("python".into()),
            prompt: "fix it".into(),
            completion: "fixed".into(),
            logprob_sum: -3.5,
            token_count: 4,
            latency_ms: 120,
            tokens: None,
        }
    }

    fn event(id: &str, kind: EventKind) -> Event {
        Event {
            suggestion_id: id.into(),
            time_ms: 5,
            kind,
        }
    }

    #[test]
    fn round_trip_of_suggestions_and_every_event_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Store::open(&dir.path().join("sub/fb.sqlite3")).unwrap();
        assert_eq!(st.schema_version().unwrap(), SCHEMA_VERSION);
        let s = suggestion("a", "edit", 1);
        st.insert_suggestion(&s).unwrap();
        assert_eq!(st.suggestion("a").unwrap(), Some(s));
        let kinds = vec![
            EventKind::Shown,
            EventKind::Accepted,
            EventKind::PartiallyAccepted { fraction: 0.25 },
            EventKind::Rejected {
                reason: "replaced".into(),
            },
            EventKind::Retained {
                fraction: 0.75,
                after_minutes: 10,
            },
            EventKind::Executed {
                passed: false,
                summary: "1 failed".into(),
            },
        ];
        for k in &kinds {
            st.insert_event(&event("a", k.clone())).unwrap();
        }
        let got: Vec<EventKind> = st
            .events("a")
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(got, kinds);
        assert!(matches!(
            st.insert_event(&event("nope", EventKind::Shown)),
            Err(FeedbackError::UnknownSuggestion(_))
        ));
        let journal: String = st
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
    }

    #[test]
    fn an_old_database_is_migrated_and_a_newer_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            // A row as Basis wrote it at schema 1 (no later columns).
            conn.execute(
                "INSERT INTO suggestions (id, created_ms, skill, model_name, model_version, prompt, \
                 completion, logprob_sum, token_count, latency_ms) \
                 VALUES ('old', 1, 'review', 'm', 'base', 'p', 'c', -1.0, 1, 1)",
                [],
            )
            .unwrap();
        }
        let mut st = Store::open(&path).unwrap();
        assert_eq!(st.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(st.suggestion("old").unwrap().is_some());
        st.add_dropped(3).unwrap();
        drop(st);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&path)
            .err()
            .expect("a newer schema is refused")
            .to_string();
        assert!(err.contains("newer Basis"), "{err}");
    }

    #[test]
    fn stats_exports_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Store::open(&dir.path().join("fb.sqlite3")).unwrap();
        st.insert_suggestion(&suggestion("a", "edit", 100)).unwrap();
        st.insert_suggestion(&suggestion("b", "edit", 200)).unwrap();
        st.insert_suggestion(&suggestion("c", "localize", 300))
            .unwrap();
        let mut hashed = suggestion("d", "edit", 400);
        hashed.prompt = "sha256:00 len:3".into();
        st.insert_suggestion(&hashed).unwrap();
        for (id, k) in [
            ("a", EventKind::Shown),
            ("a", EventKind::Accepted),
            ("b", EventKind::Shown),
            (
                "b",
                EventKind::Rejected {
                    reason: "dismissed".into(),
                },
            ),
            ("c", EventKind::Shown),
            ("d", EventKind::Accepted),
        ] {
            st.insert_event(&event(id, k)).unwrap();
        }
        st.add_dropped(2).unwrap();
        st.add_dropped(5).unwrap();
        let stats = st.stats().unwrap();
        assert_eq!((stats.suggestions, stats.events, stats.dropped), (4, 6, 7));
        let edit = &stats.by_skill[0];
        assert_eq!(edit.skill, "edit");
        assert_eq!(
            (edit.suggestions, edit.shown, edit.accepted, edit.rejected),
            (3, 2, 2, 1)
        );
        assert!((edit.mean_reward.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(stats.by_skill[1].mean_reward, None);

        let cfg = RewardConfig::default();
        let mut out = Vec::new();
        assert_eq!(st.export_jsonl(&mut out, &cfg).unwrap(), 4);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["schema"], "basis.feedback/1");
        assert_eq!(lines[0]["id"], "a");
        assert_eq!(lines[0]["reward"], 1.0);
        assert_eq!(lines[0]["events"][1]["kind"], "accepted");
        assert_eq!(lines[2]["reward"], serde_json::Value::Null);

        let mut out = Vec::new();
        assert_eq!(st.export_kto(&mut out, &cfg).unwrap(), 2);
        let kto: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            kto[0],
            json!({"prompt": "fix it", "completion": "fixed", "label": true})
        );
        assert_eq!(kto[1]["label"], false);

        assert_eq!(st.purge(Some(250)).unwrap(), 2);
        assert!(st.suggestion("a").unwrap().is_none());
        assert!(st.events("a").unwrap().is_empty());
        assert_eq!(st.stats().unwrap().events, 2);
        assert_eq!(st.purge(None).unwrap(), 2);
        assert_eq!(st.stats().unwrap().suggestions, 0);
    }
}
