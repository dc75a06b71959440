//! Escape probes against the sandbox: network, writes outside the copy, reading
//! files outside the workspace, a fork bomb, an infinite loop, an output flood and
//! a child left running. Each is blocked or bounded, and nothing survives a run.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use basis_skills::sandbox::{Isolation, Limits, Sandbox};

fn sandbox(isolation: Isolation) -> Sandbox {
    let detected = Sandbox::detect();
    assert_eq!(
        detected.isolation,
        Isolation::Bubblewrap,
        "bubblewrap must work on this machine for these tests (.ci/run installs it)"
    );
    Sandbox {
        isolation,
        limits: Limits {
            wall: Duration::from_secs(5),
            processes: 64,
            output_bytes: 64 << 10,
            ..Limits::default()
        },
        pids_cgroup_root: detected.pids_cgroup_root,
        ..detected
    }
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.py"), "print('hello from the copy')\n").unwrap();
    dir
}

fn sh(sb: &Sandbox, ws: &Path, script: &str) -> basis_skills::sandbox::Outcome {
    sb.run(ws, &HashMap::new(), &["sh", "-c", script]).unwrap()
}

#[allow(clippy::disallowed_methods)] // Looks for leftovers with pgrep.
fn survivors(marker: &str) -> String {
    let out = std::process::Command::new("pgrep")
        .args(["-af", marker])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.contains("pgrep"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_copy_runs_code_and_the_real_workspace_is_untouched() {
    let ws = workspace();
    let sb = sandbox(Isolation::Bubblewrap);
    let mut overlay = HashMap::new();
    overlay.insert(
        "unsaved.py".to_string(),
        "print('from the editor buffer')\n".to_string(),
    );
    let out = sb
        .run(
            ws.path(),
            &overlay,
            &[
                "sh",
                "-c",
                "python3 main.py && python3 unsaved.py && echo x > main.py && pwd",
            ],
        )
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        "hello from the copy\nfrom the editor buffer\n/work\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.path().join("main.py")).unwrap(),
        "print('hello from the copy')\n"
    );
    assert!(!ws.path().join("unsaved.py").exists());
}

#[test]
fn no_network_not_even_loopback() {
    let ws = workspace();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = sh(
        &sandbox(Isolation::Bubblewrap),
        ws.path(),
        &format!("python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('connected')\""),
    );
    assert!(
        !out.success() && !out.stdout.contains("connected"),
        "{out:?}"
    );
}

#[test]
fn writes_outside_the_copy_and_reads_of_other_files_fail() {
    let ws = workspace();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s3cret").unwrap();
    let o = outside.path().display();
    let out = sh(
        &sandbox(Isolation::Bubblewrap),
        ws.path(),
        &format!("echo pwned > {o}/evil; echo pwned > /usr/evil; cat {o}/secret; ls /root/.ssh /root; echo done"),
    );
    assert!(out.stdout.ends_with("done\n"), "{out:?}");
    assert!(!out.stdout.contains("s3cret"), "{out:?}");
    assert!(!outside.path().join("evil").exists());
    assert!(!Path::new("/usr/evil").exists());
}

#[test]
fn infinite_loops_and_floods_are_bounded() {
    let ws = workspace();
    let sb = sandbox(Isolation::Bubblewrap);
    // Bounded by the wall-clock limit: the run was killed (not ended by itself).
    let out = sh(&sb, ws.path(), "while :; do :; done");
    assert!(
        out.timed_out && !out.success() && out.code.is_none(),
        "{out:?}"
    );
    let out = sh(&sb, ws.path(), "yes flood");
    assert!(
        out.stdout.len() <= 64 << 10 && out.truncated > 0,
        "{} kept, {} cut",
        out.stdout.len(),
        out.truncated
    );
}

#[test]
fn a_fork_bomb_is_bounded_by_the_pids_cgroup() {
    let ws = workspace();
    let sb = sandbox(Isolation::Bubblewrap);
    // Without a pids cgroup a bomb would run unbounded as root (RLIMIT_NPROC does
    // not bind root): on such a machine, assert only that the sandbox knows it.
    let Some(_) = &sb.pids_cgroup_root else {
        assert!(Sandbox::detect().pids_cgroup_root.is_none());
        return;
    };
    let out = sh(
        &sb,
        ws.path(),
        "bomb() { bomb | bomb & }; bomb; sleep 1; echo alive",
    );
    assert!(
        out.stderr.contains("fork") || out.stderr.contains("Resource"),
        "{out:?}"
    );
    for bomb in [Isolation::Bubblewrap, Isolation::LimitsOnly] {
        let sb = sandbox(bomb);
        // The run returns: the bomb hits a process limit, or the wall clock.
        let out = sh(&sb, ws.path(), "bomb() { bomb | bomb & }; bomb; sleep 1");
        let bounded =
            out.timed_out || out.stderr.contains("fork") || out.stderr.contains("Resource");
        assert!(bounded, "{bomb:?}: {out:?}");
    }
    // A run returns only once its processes are gone.
    assert_eq!(survivors("bomb"), "", "bomb processes survived");
}

#[test]
fn a_child_left_running_does_not_survive() {
    let ws = workspace();
    let sb = sandbox(Isolation::Bubblewrap);
    let out = sh(&sb, ws.path(), "(sleep 1234.5 &) ; echo started");
    assert!(out.stdout.contains("started"), "{out:?}");
    assert_eq!(survivors("sleep 1234.5"), "", "a process outlived its run");
}

#[test]
fn the_documented_fallback_still_bounds_time_and_kills_children() {
    let ws = workspace();
    let sb = sandbox(Isolation::LimitsOnly);
    let out = sh(&sb, ws.path(), "while :; do :; done");
    assert!(out.timed_out, "{out:?}");
    let out = sh(&sb, ws.path(), "sleep 2345.5 & echo started");
    assert!(out.stdout.contains("started"), "{out:?}");
    assert_eq!(survivors("sleep 2345.5"), "", "a process outlived its run");
    let out = sh(&sb, ws.path(), "python3 main.py");
    assert_eq!(out.stdout, "hello from the copy\n");
}

mod runners {
    //! The test runners, through the sandbox.
    use super::*;
    use basis_code::Language;
    use basis_skills::runner::{run_tests, RunnerError};

    #[test]
    fn python_tests_pass_and_fail_for_real() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(
            ws.path().join("calc.py"),
            "def add(a, b):\n    return a + b\n",
        )
        .unwrap();
        std::fs::create_dir(ws.path().join("tests")).unwrap();
        std::fs::write(ws.path().join("tests/__init__.py"), "").unwrap();
        let test = "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n";
        std::fs::write(ws.path().join("tests/test_calc.py"), test).unwrap();
        let sb = sandbox(Isolation::Bubblewrap);
        let r = run_tests(&sb, ws.path(), &HashMap::new(), Language::Python, None).unwrap();
        assert!(r.passed(), "{r:?}");
        // A generated test that fails, given as an overlay (never written to the tree).
        let mut overlay = HashMap::new();
        overlay.insert("tests/test_gen.py".to_string(), test.replace("4)", "5)"));
        let r = run_tests(
            &sb,
            ws.path(),
            &overlay,
            Language::Python,
            Some("tests/test_gen.py"),
        )
        .unwrap();
        assert!(!r.passed(), "{r:?}");
        assert!(r.outcome.stderr.contains("AssertionError"), "{r:?}");
        assert!(!ws.path().join("tests/test_gen.py").exists());
    }

    #[test]
    fn rust_tests_run_offline_with_a_shared_build_cache() {
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir(ws.path().join("src")).unwrap();
        std::fs::write(
            ws.path().join("Cargo.toml"),
            "[package]\nname = \"calc\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
        )
        .unwrap();
        std::fs::write(
            ws.path().join("src/lib.rs"),
            "pub fn add(a: i32, b: i32) -> i32 { a + b }\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() { assert_eq!(super::add(2, 2), 4); }\n}\n",
        )
        .unwrap();
        let home = tempfile::tempdir().unwrap();
        // The build cache goes under BASIS_HOME; keep it out of the real one.
        let sb = sandbox(Isolation::Bubblewrap);
        std::env::set_var("BASIS_HOME", home.path());
        let first = run_tests(&sb, ws.path(), &HashMap::new(), Language::Rust, None).unwrap();
        assert!(first.passed(), "{first:?}");
        let second = run_tests(
            &sb,
            ws.path(),
            &HashMap::new(),
            Language::Rust,
            Some("adds"),
        )
        .unwrap();
        assert!(second.passed(), "{second:?}");
        eprintln!(
            "cargo test in the sandbox: first {:?}, second {:?}",
            first.outcome.elapsed, second.outcome.elapsed
        );
        let broken = HashMap::from([("src/lib.rs".to_string(), "pub fn add(a: i32, b: i32) -> i32 { a - b }\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() { assert_eq!(super::add(2, 2), 4); }\n}\n".to_string())]);
        let failing = run_tests(&sb, ws.path(), &broken, Language::Rust, None).unwrap();
        assert!(!failing.passed(), "{failing:?}");
    }

    #[test]
    fn missing_toolchains_say_so() {
        let ws = workspace();
        let sb = sandbox(Isolation::Bubblewrap);
        let err =
            run_tests(&sb, ws.path(), &HashMap::new(), Language::TypeScript, None).unwrap_err();
        assert!(
            matches!(err, RunnerError::NotAvailable("TypeScript", _)),
            "{err}"
        );
        match run_tests(&sb, ws.path(), &HashMap::new(), Language::Go, None) {
            Err(RunnerError::NotAvailable("Go", why)) => assert!(why.contains("not installed")),
            // Where Go is installed, an empty module has nothing to test and go says so.
            Ok(r) => assert!(
                !r.passed()
                    || r.outcome.stdout.contains("no test files")
                    || r.outcome.stderr.contains("go.mod"),
                "{r:?}"
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_cancelled_run_stops_and_leaves_nothing_running() {
    let ws = workspace();
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sb = Sandbox {
        cancel: Some(flag.clone()),
        ..sandbox(Isolation::Bubblewrap)
    };
    // The flag goes up once the child that would outlive its parent is running.
    let run_over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raiser = {
        let (flag, run_over) = (flag.clone(), run_over.clone());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering;
            while survivors("sleep 317").is_empty() && !run_over.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(5));
            }
            flag.store(true, Ordering::Release);
        })
    };
    // The parent would run past the wall-clock limit: only the cancel ends it
    // as cancelled rather than timed out.
    let out = sh(&sb, ws.path(), "sleep 317 & sleep 30");
    run_over.store(true, std::sync::atomic::Ordering::Release);
    raiser.join().unwrap();
    assert!(out.cancelled && !out.timed_out && !out.success(), "{out:?}");
    assert_eq!(survivors("sleep 317"), "", "the child survived the cancel");
}
