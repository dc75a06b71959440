//! `basis feedback stats|export|purge` through the real binary, on a store written
//! by the feedback crate the server uses.

mod support;

use basis_feedback::{Event, EventKind, Store, Suggestion};

fn suggestion(id: &str, skill: &str, created_ms: i64) -> Suggestion {
    Suggestion {
        id: id.into(),
        created_ms,
        skill: skill.into(),
        model_name: "smollm2-135m-instruct".into(),
        model_version: "base".into(),
        workspace: Some("/ws".into()),
        file: None,
        language: None,
        prompt: "where is the bug?".into(),
        completion: "src/a.py".into(),
        logprob_sum: -2.0,
        token_count: 3,
        latency_ms: 50,
        tokens: None,
    }
}

#[test]
fn stats_export_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fb.sqlite3");
    let db_s = db.to_str().unwrap();
    {
        let mut st = Store::open(&db).unwrap();
        st.insert_suggestion(&suggestion("old", "localize", 1_000))
            .unwrap();
        st.insert_suggestion(&suggestion("new", "localize", i64::MAX / 2))
            .unwrap();
        for (id, kind) in [
            ("old", EventKind::Shown),
            ("old", EventKind::Accepted),
            (
                "new",
                EventKind::Rejected {
                    reason: "dismissed".into(),
                },
            ),
        ] {
            st.insert_event(&Event {
                suggestion_id: id.into(),
                time_ms: 2_000,
                kind,
            })
            .unwrap();
        }
        st.add_dropped(4).unwrap();
    }
    let out = support::run(&["feedback", "--db", db_s, "stats", "--json"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let stats: serde_json::Value = serde_json::from_str(&support::stdout(&out)).unwrap();
    assert_eq!(
        (
            stats["suggestions"].as_u64(),
            stats["events"].as_u64(),
            stats["dropped"].as_u64()
        ),
        (Some(2), Some(3), Some(4))
    );
    assert_eq!(stats["by_skill"][0]["mean_reward"], 0.5);
    let table = support::stdout(&support::run(&["feedback", "--db", db_s, "stats"]));
    assert!(
        table.contains("dropped 4") && table.contains("localize"),
        "{table}"
    );

    let out = support::run(&["feedback", "--db", db_s, "export"]);
    let lines: Vec<serde_json::Value> = support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["schema"], "basis.feedback/1");
    assert_eq!(lines[0]["events"].as_array().unwrap().len(), 2);
    let out = support::run(&["feedback", "--db", db_s, "export", "--format", "kto"]);
    let kto: Vec<serde_json::Value> = support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        kto[0],
        serde_json::json!({"prompt": "where is the bug?", "completion": "src/a.py", "label": true})
    );
    assert_eq!(kto[1]["label"], false);

    let out = support::run(&["feedback", "--db", db_s, "purge"]);
    assert!(!out.status.success());
    assert!(
        support::stderr(&out).contains("--yes"),
        "{}",
        support::stderr(&out)
    );
    let out = support::run(&[
        "feedback",
        "--db",
        db_s,
        "purge",
        "--older-than-days",
        "1",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert!(
        support::stderr(&out).contains("purged 1"),
        "{}",
        support::stderr(&out)
    );
    let st = Store::open(&db).unwrap();
    assert!(st.suggestion("old").unwrap().is_none() && st.suggestion("new").unwrap().is_some());
}

#[test]
fn a_database_from_a_newer_basis_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fb.sqlite3");
    drop(Store::open(&db).unwrap());
    // Simulate a newer schema with the sqlite3 file format's user_version field
    // (a big-endian u32 at byte 60 of the header).
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(&db, bytes).unwrap();
    let out = support::run(&["feedback", "--db", db.to_str().unwrap(), "stats"]);
    assert!(!out.status.success());
    assert!(
        support::stderr(&out).contains("newer Basis"),
        "{}",
        support::stderr(&out)
    );
}

#[test]
fn a_store_that_is_not_there_is_an_error_not_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo/fb.sqlite3");
    for args in [&["stats"][..], &["export"], &["purge", "--yes"]] {
        let mut all = vec!["feedback", "--db", db.to_str().unwrap()];
        all.extend(args);
        let out = support::run(&all);
        let err = support::stderr(&out);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains("no feedback store at"), "{args:?}: {err}");
        assert!(!dir.path().join("typo").exists(), "{args:?} created it");
    }
}
