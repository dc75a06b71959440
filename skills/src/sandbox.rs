//! The sandbox: the only place that runs user or generated code.
//!
//! A run gets a throwaway copy of the workspace (its files as they are on disk,
//! with the editor's unsaved buffers written over them), and runs under bubblewrap:
//! no network (every namespace unshared), the system directories read-only, the
//! copy as the only writable place besides a private /tmp, the real home and every
//! other directory invisible. `prlimit` caps CPU time, memory, processes and file
//! size; the whole process group is killed at the wall-clock limit or when the run
//! ends; output beyond a cap is cut.
//!
//! Processes are bounded by a pids cgroup made for each run (cgroup v1's `pids`
//! hierarchy or cgroup v2 with the pids controller, where this process may create
//! one): `RLIMIT_NPROC` alone does not bind root and counts all of a user's
//! processes. At the end of a run every process left in the cgroup is killed and
//! the cgroup removed. Where no pids cgroup can be made, [`Sandbox::detect`] warns
//! and only `RLIMIT_NPROC` and the wall clock remain.
//!
//! Where bwrap is missing or cannot start, [`Sandbox::detect`] says so loudly and
//! the fallback runs the command directly in the throwaway copy with the same
//! limits and process-group kill, but without the namespace isolation: network,
//! the home directory and the rest of the file system stay reachable. The fallback
//! is chosen explicitly (`Isolation::LimitsOnly`), never silently.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a sandbox isolates what it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// bubblewrap: namespaces, read-only system, invisible home, no network.
    Bubblewrap,
    /// The documented weaker fallback: a throwaway copy and resource limits only.
    LimitsOnly,
}

/// Resource limits of one run.
#[derive(Debug, Clone)]
pub struct Limits {
    pub wall: Duration,
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
    /// The pids cgroup's `pids.max` (and `RLIMIT_NPROC`, which does not bind root).
    pub processes: u64,
    /// The largest file the run may write.
    pub file_bytes: u64,
    /// Output kept per stream; the rest is cut and counted.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wall: Duration::from_secs(60),
            cpu_seconds: 60,
            memory_bytes: 2 << 30,
            processes: 256,
            file_bytes: 256 << 20,
            output_bytes: 1 << 20,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code; `None` when killed by a signal (including our wall-clock kill).
    pub code: Option<i32>,
    pub timed_out: bool,
    /// Stopped because [`Sandbox::cancel`] was raised.
    pub cancelled: bool,
    pub stdout: String,
    pub stderr: String,
    /// Bytes of output dropped beyond `Limits::output_bytes`.
    pub truncated: u64,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("copying the workspace into the sandbox: {0}")]
    Copy(std::io::Error),
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// A sandbox configuration, reusable across runs.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub isolation: Isolation,
    pub limits: Limits,
    /// Extra read-only directories to expose (toolchains outside /usr, e.g. ~/.cargo).
    pub read_only: Vec<PathBuf>,
    /// Where per-run pids cgroups are made; `None` when none can be.
    pub pids_cgroup_root: Option<PathBuf>,
    /// Extra mounts (toolchains, build caches); bubblewrap only.
    pub mounts: Vec<Mount>,
    /// Extra environment variables for the command.
    pub env: Vec<(String, String)>,
    /// Extra `PATH` entries, in front of the system's.
    pub path: Vec<String>,
    /// When raised, a run in progress is killed (its process group and cgroup)
    /// and ends with `cancelled`.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// A directory of the host made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub host: PathBuf,
    pub inside: String,
    pub writable: bool,
}

/// A per-run pids cgroup, removed (with everything still in it killed) on drop.
struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    fn create(root: &Path, max: u64) -> Option<PidsCgroup> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = root.join(format!(
            "basis-sandbox-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).ok()?;
        let cg = PidsCgroup { dir };
        std::fs::write(cg.dir.join("pids.max"), max.to_string()).ok()?;
        Some(cg)
    }

    fn procs(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Kills every process in the cgroup until it is empty (a fork racing the
    /// kill gets the next round).
    #[allow(clippy::disallowed_methods)] // `kill` itself, not user code.
    fn kill_all(&self) {
        for _ in 0..50 {
            let procs = self.procs();
            if procs.is_empty() {
                return;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&procs)
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        self.kill_all();
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A directory under which this process can make pids cgroups.
fn find_pids_cgroup_root() -> Option<PathBuf> {
    let v2 = Path::new("/sys/fs/cgroup");
    let v2_has_pids = std::fs::read_to_string(v2.join("cgroup.subtree_control"))
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "pids"));
    let candidates = [PathBuf::from("/sys/fs/cgroup/pids"), v2.to_path_buf()];
    candidates
        .into_iter()
        .filter(|c| c.ends_with("pids") || v2_has_pids)
        .find(|c| PidsCgroup::create(c, 1).is_some())
}

/// What every run sees of the host: no namespaces shared, the system read-only.
const SYSTEM_VIEW: &[&str] = &[
    "--unshare-all",
    "--die-with-parent",
    "--ro-bind",
    "/usr",
    "/usr",
    "--ro-bind-try",
    "/bin",
    "/bin",
    "--ro-bind-try",
    "/lib",
    "/lib",
    "--ro-bind-try",
    "/lib64",
    "/lib64",
];

/// Directories copied into the sandbox never: version control and build output.
const SKIP_DIRS: &[&str] = &[".git", "target", "node_modules", "__pycache__", ".venv"];

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let ty = entry.file_type()?;
        let dst = to.join(&name);
        if ty.is_dir() {
            if !SKIP_DIRS.iter().any(|s| name == *s) {
                copy_tree(&entry.path(), &dst)?;
            }
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dst)?;
        }
        // Symlinks are not followed: they could point out of the workspace.
    }
    Ok(())
}

/// Reads a stream to its end, keeping at most `cap` bytes.
fn read_capped(mut r: impl Read, cap: usize) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped += (n - n.min(room)) as u64;
            }
        }
    }
    (kept, dropped)
}

/// Kills every process of a process group, and returns once none of them runs
/// any more (or after two seconds): when a run returns, nothing of it is left.
#[allow(clippy::disallowed_methods)] // `kill` itself, not user code.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    for _ in 0..400 {
        if !group_alive(pgid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a process of group `pgid` still runs (a zombie, which only waits to
/// be reaped, does not). Reads `/proc`; where there is none, says no.
fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            // After the command name in parentheses: state, ppid, pgrp, ...
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
            state != Some("Z") && pgrp == Some(pgid)
        })
}

impl Sandbox {
    /// bubblewrap when it is installed and can start here; otherwise the weaker
    /// fallback, with a warning on stderr saying what is missing.
    pub fn detect() -> Sandbox {
        let isolation = if bwrap_works() {
            Isolation::Bubblewrap
        } else {
            eprintln!(
                "WARNING: bubblewrap (bwrap) is missing or cannot start here; generated code will run with \
                 resource limits only, WITHOUT network or file-system isolation. Install the `bubblewrap` package."
            );
            Isolation::LimitsOnly
        };
        let pids_cgroup_root = find_pids_cgroup_root();
        if pids_cgroup_root.is_none() {
            eprintln!(
                "WARNING: no pids cgroup can be made here; sandboxed runs are bounded in processes only by \
                 RLIMIT_NPROC (which does not bind root) and the wall clock."
            );
        }
        Sandbox {
            isolation,
            limits: Limits::default(),
            read_only: Vec::new(),
            pids_cgroup_root,
            mounts: Vec::new(),
            env: Vec::new(),
            path: Vec::new(),
            cancel: None,
        }
    }

    /// Runs `argv` in a throwaway copy of `workspace` with `overlay` (relative
    /// path → text: unsaved buffers, generated tests) written over it.
    pub fn run(
        &self,
        workspace: &Path,
        overlay: &HashMap<String, String>,
        argv: &[&str],
    ) -> Result<Outcome, SandboxError> {
        let scratch = tempfile::Builder::new()
            .prefix("basis-sandbox-")
            .tempdir()
            .map_err(SandboxError::Copy)?;
        let copy = scratch.path().join("work");
        copy_tree(workspace, &copy).map_err(SandboxError::Copy)?;
        for (rel, text) in overlay {
            let rel = Path::new(rel);
            if rel.is_absolute()
                || rel
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                continue;
            }
            let dst = copy.join(rel);
            if let Some(dir) = dst.parent() {
                std::fs::create_dir_all(dir).map_err(SandboxError::Copy)?;
            }
            std::fs::write(&dst, text).map_err(SandboxError::Copy)?;
        }
        let tmp = scratch.path().join("tmp");
        std::fs::create_dir_all(&tmp).map_err(SandboxError::Copy)?;
        self.run_in(&copy, &tmp, argv)
    }

    fn command(&self, copy: &Path, tmp: &Path, argv: &[&str]) -> Vec<String> {
        let l = &self.limits;
        let mut cmd: Vec<String> = vec![
            "prlimit".into(),
            format!("--cpu={}", l.cpu_seconds),
            format!("--as={}", l.memory_bytes),
            format!("--nproc={}", l.processes),
            format!("--fsize={}", l.file_bytes),
            "--core=0".into(),
            "--".into(),
        ];
        if self.isolation == Isolation::Bubblewrap {
            let s = |p: &Path| p.display().to_string();
            cmd.push("bwrap".into());
            cmd.extend(SYSTEM_VIEW.iter().map(|a| a.to_string()));
            cmd.extend(
                [
                    "--new-session",
                    "--ro-bind-try",
                    "/etc/alternatives",
                    "/etc/alternatives",
                    "--ro-bind-try",
                    "/etc/ssl",
                    "/etc/ssl",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                ]
                .map(String::from),
            );
            for dir in &self.read_only {
                cmd.extend(["--ro-bind-try".into(), s(dir), s(dir)]);
            }
            cmd.extend(["--bind".into(), s(tmp), "/tmp".into()]);
            for m in &self.mounts {
                let kind = if m.writable { "--bind" } else { "--ro-bind" };
                cmd.extend([kind.into(), s(&m.host), m.inside.clone()]);
            }
            cmd.extend(["--bind".into(), s(copy), "/work".into()]);
            cmd.extend(
                [
                    "--chdir", "/work", "--setenv", "HOME", "/work", "--setenv", "TMPDIR", "/tmp",
                    "--",
                ]
                .map(String::from),
            );
        }
        cmd.extend(argv.iter().map(|a| a.to_string()));
        cmd
    }

    #[allow(clippy::disallowed_methods)] // The sandbox is the one place that runs user code.
    fn run_in(&self, copy: &Path, tmp: &Path, argv: &[&str]) -> Result<Outcome, SandboxError> {
        use std::os::unix::process::CommandExt;
        let mut cmd = self.command(copy, tmp, argv);
        let cgroup = self
            .pids_cgroup_root
            .as_deref()
            .and_then(|root| PidsCgroup::create(root, self.limits.processes));
        if let Some(cg) = &cgroup {
            // The shell joins the cgroup, then becomes the command: everything the
            // command starts is counted and killed with it.
            let procs = cg.dir.join("cgroup.procs").display().to_string();
            let mut wrapped = vec![
                "/bin/sh".to_string(),
                "-c".into(),
                "echo $$ > \"$0\" && exec \"$@\"".into(),
                procs,
            ];
            wrapped.append(&mut cmd);
            cmd = wrapped;
        }
        let start = Instant::now();
        let mut command = Command::new(&cmd[0]);
        let mut path = self.path.clone();
        path.push("/usr/local/bin:/usr/bin:/bin".into());
        command
            .args(&cmd[1..])
            .current_dir(copy)
            .env_clear()
            .env("PATH", path.join(":"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "HOME",
                if self.isolation == Isolation::Bubblewrap {
                    Path::new("/work")
                } else {
                    copy
                },
            )
            .env("TMPDIR", tmp)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().map_err(|source| SandboxError::Spawn {
            program: cmd[0].clone(),
            source,
        })?;
        let pgid = child.id();
        let cap = self.limits.output_bytes;
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        let out_reader = std::thread::spawn(move || read_capped(out, cap));
        let err_reader = std::thread::spawn(move || read_capped(err, cap));
        // A thread waits for the exit, so the run ends the moment the command
        // does; the wall-clock limit is a timeout on that wait.
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        // The wait is sliced so that a raised cancel flag is seen within 50 ms.
        let cancelled_now = || {
            self.cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Acquire))
        };
        let (mut timed_out, mut cancelled) = (false, false);
        let status = loop {
            let left = self.limits.wall.saturating_sub(start.elapsed());
            match rx.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(status) => break status,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if start.elapsed() >= self.limits.wall || cancelled_now() {
                        timed_out = !cancelled_now();
                        cancelled = !timed_out;
                        kill_group(pgid);
                        break rx
                            .recv()
                            .unwrap_or_else(|_| Err(std::io::Error::other("the waiter stopped")));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(std::io::Error::other("the waiter stopped"));
                }
            }
        };
        let _ = waiter.join();
        let status = status.map_err(|source| SandboxError::Spawn {
            program: cmd[0].clone(),
            source,
        })?;
        // Whatever the command left behind goes too: its process group, and
        // everything in its cgroup (which also catches processes that left the
        // group with setsid).
        kill_group(pgid);
        drop(cgroup);
        let (stdout, d1) = out_reader.join().unwrap_or_default();
        let (stderr, d2) = err_reader.join().unwrap_or_default();
        Ok(Outcome {
            code: status.code(),
            timed_out,
            cancelled,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            truncated: d1 + d2,
            elapsed: start.elapsed(),
        })
    }
}

#[allow(clippy::disallowed_methods)] // Probes whether bwrap can start, running `true`.
fn bwrap_works() -> bool {
    Command::new("bwrap")
        .args(SYSTEM_VIEW)
        .args(["--", "/usr/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
