//! The editor scenario (`editors/scenario.json`) that every editor client's
//! end-to-end suite runs, and the one check of what it left in the feedback
//! store, so the clients cannot drift apart in what they record.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/scenario.json")
}

pub fn load() -> Value {
    let text = std::fs::read_to_string(path()).expect("editors/scenario.json is readable");
    serde_json::from_str(&text).expect("editors/scenario.json is JSON")
}

/// The fixture workspace the scenario runs on.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(
        load()["fixture"]
            .as_str()
            .expect("the scenario names its fixture"),
    )
}

/// Checks that a client's run of the scenario (`results`: `{"steps": [{"name",
/// "suggestionId", …}]}`, the steps named in `only`, or all) left exactly the
/// expected events in the feedback store at `db`: per step, its suggestion of
/// the step's skill with the event kinds of `expect` (in any order), and no
/// suggestion the scenario did not make.
pub fn check_feedback(db: &Path, results: &Value, only: Option<&[&str]>) {
    let scenario = load();
    let store = basis_feedback::Store::open(db).unwrap();
    let steps: Vec<&Value> = scenario["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| only.is_none_or(|o| o.contains(&s["name"].as_str().unwrap())))
        .collect();
    let mut failures = Vec::new();
    let mut ids = Vec::new();
    for step in &steps {
        let name = step["name"].as_str().unwrap();
        let Some(done) = results["steps"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name))
        else {
            failures.push(format!("{name}: the client did not run it"));
            continue;
        };
        let Some(id) = done["suggestionId"].as_str() else {
            failures.push(format!("{name}: no suggestion id in {done}"));
            continue;
        };
        ids.push(id.to_string());
        match store.suggestion(id).unwrap() {
            None => failures.push(format!("{name}: suggestion {id} is not stored")),
            Some(s) if s.skill != step["skill"].as_str().unwrap() => failures.push(format!(
                "{name}: stored as {} not {}",
                s.skill, step["skill"]
            )),
            Some(_) => {}
        }
        let mut got: Vec<String> = store
            .events(id)
            .unwrap()
            .iter()
            .map(|e| e.kind.name().to_string())
            .collect();
        let mut want: Vec<String> = step["expect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        got.sort();
        want.sort();
        if got != want {
            failures.push(format!(
                "{name}: events {got:?}, expected {want:?} (client saw {done})"
            ));
        }
    }
    let mut stored = Vec::new();
    store
        .for_each_suggestion(&mut |s, _| {
            stored.push(s.id);
            Ok(())
        })
        .unwrap();
    for id in stored {
        if !ids.contains(&id) {
            failures.push(format!(
                "suggestion {id} was made outside the scenario's steps"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the feedback store does not hold what the scenario expects:\n{}",
        failures.join("\n")
    );
}
