//! The background writer: the only thing the server touches on a hot path. It owns
//! a [`Store`] on its own thread and is fed by a bounded queue; each batch of
//! queued records is one transaction, and acknowledgements fire after it commits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::store::{add_dropped, insert_event, insert_suggestion, EventError, Store};
use crate::{Event, FeedbackError, Privacy, Suggestion};

type Ack = Box<dyn FnOnce(Result<(), FeedbackError>) + Send>;

enum Msg {
    Suggestion(Box<Suggestion>, Ack),
    Event(Event),
    Flush(std::sync::mpsc::Sender<Result<(), FeedbackError>>),
}

struct Inner {
    dropped: AtomicU64,
    privacy: Mutex<Privacy>,
}

/// A cheap handle on the writer thread; the thread ends when the last handle is
/// dropped, after writing what was queued.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Msg>,
    inner: Arc<Inner>,
}

/// The most records written in one transaction.
const MAX_BATCH: usize = 512;

impl Writer {
    /// Opens the store (errors surface here, not later) and starts the thread.
    pub fn spawn(
        path: &std::path::Path,
        privacy: Privacy,
        capacity: usize,
    ) -> Result<Writer, FeedbackError> {
        let store = Store::open(path)?;
        let (tx, rx) = sync_channel(capacity.max(1));
        let inner = Arc::new(Inner {
            dropped: AtomicU64::new(0),
            privacy: Mutex::new(privacy),
        });
        let thread_inner = inner.clone();
        std::thread::Builder::new()
            .name("basis-feedback".into())
            .spawn(move || run(store, rx, thread_inner))
            .map_err(|source| FeedbackError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Writer { tx, inner })
    }

    /// Queues a suggestion; `ack` runs on the writer thread once it is committed
    /// (or failed). Returns false, without calling `ack`, when the queue is full.
    pub fn record_suggestion(&self, s: Suggestion, ack: Ack) -> bool {
        match self.tx.try_send(Msg::Suggestion(Box::new(s), ack)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues an event without ever blocking; a full queue drops it and counts it.
    pub fn record_event(&self, e: Event) -> bool {
        match self.tx.try_send(Msg::Event(e)) {
            Ok(()) => true,
            Err(_) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Blocks until everything queued before this call is committed.
    pub fn flush(&self) -> Result<(), FeedbackError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Msg::Flush(tx))
            .map_err(|_| FeedbackError::WriterStopped)?;
        rx.recv().map_err(|_| FeedbackError::WriterStopped)?
    }

    /// Records dropped by this process so far.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Later records follow this policy.
    pub fn set_privacy(&self, p: Privacy) {
        *self.inner.privacy.lock().unwrap() = p;
    }
}

fn run(mut store: Store, rx: Receiver<Msg>, inner: Arc<Inner>) {
    let mut persisted_drops = 0u64;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        // A suggestion about a file outside its workspace is answered with an
        // error and never reaches the transaction.
        let batch: Vec<Msg> = batch
            .into_iter()
            .filter_map(|m| match m {
                Msg::Suggestion(s, ack) => match s.check_confined() {
                    Ok(()) => Some(Msg::Suggestion(s, ack)),
                    Err(e) => {
                        eprintln!("basis feedback: {e}");
                        ack(Err(e));
                        None
                    }
                },
                m => Some(m),
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        let privacy = inner.privacy.lock().unwrap().clone();
        let drops = inner.dropped.load(Ordering::Relaxed);
        let result = write_batch(&mut store, &batch, &privacy, drops - persisted_drops);
        if result.is_ok() {
            persisted_drops = drops;
        }
        let path = store.path().to_path_buf();
        let failure = |message: &str| FeedbackError::WriteFailed {
            path: path.clone(),
            message: message.to_string(),
        };
        if let Err(e) = &result {
            eprintln!(
                "basis feedback: a batch of {} records was not written: {e}",
                batch.len()
            );
        }
        for msg in batch {
            match msg {
                Msg::Suggestion(_, ack) => ack(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(failure(&e.to_string())),
                }),
                Msg::Flush(tx) => {
                    let _ = tx.send(match &result {
                        Ok(()) => Ok(()),
                        Err(e) => Err(failure(&e.to_string())),
                    });
                }
                Msg::Event(_) => {}
            }
        }
    }
}

fn write_batch(
    store: &mut Store,
    batch: &[Msg],
    privacy: &Privacy,
    new_drops: u64,
) -> Result<(), FeedbackError> {
    let path = store.path().to_path_buf();
    let sql = |source| FeedbackError::Sqlite {
        path: path.clone(),
        source,
    };
    let tx = store.conn().transaction().map_err(sql)?;
    let mut skipped = 0u64;
    for msg in batch {
        match msg {
            Msg::Suggestion(s, _) => {
                if let Some(s) = privacy.apply((**s).clone()) {
                    insert_suggestion(&tx, &s).map_err(sql)?;
                }
            }
            Msg::Event(e) => match insert_event(&tx, e) {
                Ok(()) => {}
                // Filtered by privacy, purged, or never stored: not an error.
                Err(EventError::Unknown) => skipped += 1,
                Err(EventError::Sql(s)) => return Err(sql(s)),
            },
            Msg::Flush(_) => {}
        }
    }
    if new_drops > 0 {
        add_dropped(&tx, new_drops).map_err(sql)?;
    }
    tx.commit().map_err(sql)?;
    if skipped > 0 && privacy.enabled {
        eprintln!("basis feedback: {skipped} events for unknown suggestions were skipped");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::suggestion;
    use crate::EventKind;
    use std::path::Path;

    #[test]
    fn acks_fire_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.sqlite3");
        let w = Writer::spawn(&path, Privacy::default(), 16).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let check_path = path.clone();
        assert!(w.record_suggestion(
            suggestion("a", "edit", 1),
            Box::new(move |r| {
                // Another connection sees the row as soon as the ack fires.
                let other = Store::open(&check_path).unwrap();
                let _ = tx.send((r.is_ok(), other.suggestion("a").unwrap().is_some()));
            })
        ));
        assert_eq!(rx.recv().unwrap(), (true, true));
        assert!(w.record_event(Event {
            suggestion_id: "a".into(),
            time_ms: 1,
            kind: EventKind::Shown
        }));
        w.flush().unwrap();
        assert_eq!(Store::open(&path).unwrap().events("a").unwrap().len(), 1);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_the_count_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.sqlite3");
        let w = Writer::spawn(&path, Privacy::default(), 1).unwrap();
        w.record_suggestion(suggestion("a", "edit", 1), Box::new(|_| {}));
        w.flush().unwrap();
        let mut accepted = 0;
        for _ in 0..2000 {
            if w.record_event(Event {
                suggestion_id: "a".into(),
                time_ms: 1,
                kind: EventKind::Shown,
            }) {
                accepted += 1;
            }
        }
        assert!(w.dropped() > 0, "a queue of 1 took all 2000 events");
        w.flush().unwrap();
        // The count is written with the next batch.
        w.record_event(Event {
            suggestion_id: "a".into(),
            time_ms: 1,
            kind: EventKind::Shown,
        });
        w.flush().unwrap();
        let stats = Store::open(&path).unwrap().stats().unwrap();
        assert_eq!(stats.dropped, w.dropped());
        assert_eq!(stats.events, accepted + 1);
    }

    #[test]
    fn privacy_applies_on_the_writer_and_can_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.sqlite3");
        let w = Writer::spawn(
            &path,
            Privacy {
                enabled: false,
                ..Privacy::default()
            },
            8,
        )
        .unwrap();
        w.record_suggestion(suggestion("a", "edit", 1), Box::new(|r| assert!(r.is_ok())));
        w.record_event(Event {
            suggestion_id: "a".into(),
            time_ms: 1,
            kind: EventKind::Shown,
        });
        w.flush().unwrap();
        w.set_privacy(Privacy::default());
        w.record_suggestion(suggestion("b", "edit", 1), Box::new(|_| {}));
        w.flush().unwrap();
        let st = Store::open(&path).unwrap();
        assert!(st.suggestion("a").unwrap().is_none());
        assert!(st.suggestion("b").unwrap().is_some());
    }

    #[test]
    fn writers_on_many_threads_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.sqlite3");
        let w = Writer::spawn(&path, Privacy::default(), 100_000).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        assert!(w.record_suggestion(
                            suggestion(&format!("{t}-{i}"), "edit", i),
                            Box::new(|r| assert!(r.is_ok()))
                        ));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        w.flush().unwrap();
        assert_eq!(
            Store::open(&path).unwrap().stats().unwrap().suggestions,
            1000
        );
    }

    /// The child side of the SIGKILL test: writes suggestions forever, printing each
    /// id once its ack (its commit) has fired.
    fn sigkill_child(path: &std::path::Path) -> ! {
        use std::io::Write;
        let w = Writer::spawn(path, Privacy::default(), 64).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            for id in rx {
                // The test harness captures print!, so write to the real stdout.
                let _ = writeln!(out, "ACK {id}");
                let _ = out.flush();
            }
        });
        for i in 0u64.. {
            let id = format!("s{i}");
            loop {
                let tx = tx.clone();
                let ack_id = id.clone();
                let queued = w.record_suggestion(
                    suggestion(&id, "edit", i as i64),
                    Box::new(move |r| {
                        if r.is_ok() {
                            let _ = tx.send(ack_id);
                        }
                    }),
                );
                if queued {
                    break;
                }
                std::thread::yield_now();
            }
        }
        unreachable!()
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // Re-runs this test binary as the process to kill.
    fn every_acknowledged_suggestion_survives_sigkill() {
        use std::io::BufRead;
        if let Some(path) = std::env::var_os("BASIS_FEEDBACK_SIGKILL_CHILD") {
            sigkill_child(std::path::Path::new(&path));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb.sqlite3");
        let mut all_acked = Vec::new();
        for round in 0..20 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "writer::tests::every_acknowledged_suggestion_survives_sigkill",
                    "--nocapture",
                ])
                .env("BASIS_FEEDBACK_SIGKILL_CHILD", &path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let reader = std::io::BufReader::new(child.stdout.take().unwrap());
            let want = 20 + round * 37;
            let mut acked = Vec::new();
            for line in reader.lines() {
                let line = line.unwrap();
                if let Some(id) = line.strip_prefix("ACK ") {
                    acked.push(format!("{round}:{id}"));
                    if acked.len() >= want {
                        break;
                    }
                }
            }
            child.kill().unwrap();
            child.wait().unwrap();
            assert_eq!(acked.len(), want, "the child stopped acknowledging");
            // Ids restart each round (s0, s1, ...), so check this round's now.
            let st = Store::open(&path).unwrap();
            for id in &acked {
                let raw = id.split_once(':').unwrap().1;
                assert!(
                    st.suggestion(raw).unwrap().is_some(),
                    "round {round}: acked {raw} is missing"
                );
            }
            all_acked.extend(acked);
        }
        assert!(all_acked.len() > 1000);
    }

    #[test]
    fn a_suggestion_about_a_file_outside_its_workspace_is_refused_and_the_rest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(dir.path().join("secret.py"), "canary").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret.py"), ws.join("link.py")).unwrap();
        let path = dir.path().join("fb.sqlite3");
        let w = Writer::spawn(&path, Privacy::default(), 16).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let at = |id: &str, workspace: Option<&Path>, file: Option<&str>| Suggestion {
            workspace: workspace.map(|p| p.display().to_string()),
            file: file.map(String::from),
            ..suggestion(id, "edit", 1)
        };
        let cases = [
            at("inside", Some(&ws), Some("src/new_test.py")),
            at("dots", Some(&ws), Some("../secret.py")),
            at("link", Some(&ws), Some("link.py")),
            at("absolute", Some(&ws), Some("/etc/passwd")),
            at("no-workspace", None, Some("a.py")),
            at("no-file", None, None),
        ];
        for s in cases {
            let (tx, id) = (tx.clone(), s.id.clone());
            assert!(w.record_suggestion(s, Box::new(move |r| tx.send((id, r.is_ok())).unwrap())));
        }
        w.flush().unwrap();
        let mut acks: Vec<(String, bool)> = rx.try_iter().collect();
        acks.sort();
        assert_eq!(
            acks,
            [
                ("absolute".to_string(), false),
                ("dots".to_string(), false),
                ("inside".to_string(), true),
                ("link".to_string(), false),
                ("no-file".to_string(), true),
                ("no-workspace".to_string(), false),
            ]
        );
        let store = Store::open(&path).unwrap();
        for (id, kept) in acks {
            assert_eq!(store.suggestion(&id).unwrap().is_some(), kept, "{id}");
        }
        let mut direct = Store::open(&path).unwrap();
        assert!(matches!(
            direct.insert_suggestion(&at("direct", Some(&ws), Some("link.py"))),
            Err(FeedbackError::OutsideWorkspace(_))
        ));
    }
}
