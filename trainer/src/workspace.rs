//! A task's repository as the skill sees it: the repository checked out at the
//! task's commit into a throwaway tree (never in the user's working tree), with
//! the task's setup patch laid over it as an overlay (the sandbox writes the
//! overlay over its own copy; nothing here writes to the checkout).
//!
//! Checkouts are made with git's plumbing into a folder of their own: a private
//! index file (`GIT_INDEX_FILE`), `read-tree` and `checkout-index`, so the
//! repository's own index, working tree and worktree list are untouched. They
//! are cached per repository and commit, built under a temporary name and
//! renamed when complete.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use basis_skills::diff::{apply_patch, parse_patch};
use sha2::{Digest, Sha256};

use crate::task::RepoRef;

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("the repository {0} does not exist")]
    RepoMissing(PathBuf),
    #[error(
        "none of the tasks' repositories exists ({count} looked for, the first {first}); \
         relative repository paths are read under {root}: is the repository root (--repo-root) right?"
    )]
    NoRepos {
        first: PathBuf,
        root: PathBuf,
        count: usize,
    },
    #[error("{repo} has no commit `{commit}`")]
    CommitMissing { repo: PathBuf, commit: String },
    #[error("the task's patch does not apply to {repo}: {message}")]
    Patch { repo: PathBuf, message: String },
    #[error("git in {repo}: {message}")]
    Git { repo: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs git in `repo` (read-only commands, or with a private index).
pub(crate) fn git(repo: &Path, args: &[&str], env: &[(&str, &Path)]) -> std::io::Result<Output> {
    #[allow(clippy::disallowed_methods)] // git is the user's tool, not repository code
    let mut cmd = std::process::Command::new("git");
    cmd.arg("-C").arg(repo).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
}

/// Runs git and returns its stdout, or what it said went wrong.
pub(crate) fn git_text(repo: &Path, args: &[&str]) -> Result<String, WorkspaceError> {
    let out = git(repo, args, &[]).map_err(|e| WorkspaceError::Git {
        repo: repo.to_path_buf(),
        message: format!("cannot run git: {e}"),
    })?;
    if !out.status.success() {
        return Err(WorkspaceError::Git {
            repo: repo.to_path_buf(),
            message: format!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The full id of `commit` in `repo`, if it is a commit there.
pub fn resolve_commit(repo: &Path, commit: &str) -> Option<String> {
    let out = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{commit}^{{commit}}"),
        ],
        &[],
    )
    .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A task's tree: a folder, and files laid over it.
#[derive(Debug, Clone)]
pub struct TaskTree {
    pub root: PathBuf,
    /// Relative path → text: the task's starting state where it differs from
    /// `root` (a deleted file is an empty text).
    pub overlay: HashMap<String, String>,
}

impl TaskTree {
    /// A file's text in the task's state; nothing for a file that resolves
    /// outside the repository (see [`basis_code::Workspace`]).
    pub fn read(&self, rel: &str) -> Option<String> {
        match self.overlay.get(rel) {
            Some(t) => Some(t.clone()),
            None => basis_code::Workspace::new(&self.root).read(Path::new(rel)),
        }
    }

    /// The one relative path of the task's file `rel`: itself when it is a
    /// file of the overlay or a plain file inside, the target's path when it is
    /// a link to a file inside; an error saying why when it resolves outside.
    pub fn locate(&self, rel: &str) -> Result<String, basis_code::Refused> {
        if self.overlay.contains_key(rel) {
            return Ok(rel.to_string());
        }
        Ok(basis_code::Workspace::new(&self.root)
            .locate(Path::new(rel))?
            .rel)
    }

    /// The workspace index of the task's state (for retrieval).
    pub fn index(&self) -> basis_code::WorkspaceIndex {
        let never = AtomicBool::new(false);
        let mut index = basis_code::WorkspaceIndex::build(
            self.root.clone(),
            basis_code::Limits::default(),
            &mut |_| {},
            &never,
        )
        .unwrap_or_else(|_| {
            basis_code::WorkspaceIndex::new(self.root.clone(), basis_code::Limits::default())
        });
        let mut overlay: Vec<(&String, &String)> = self.overlay.iter().collect();
        overlay.sort();
        for (path, text) in overlay {
            index.update_text(path, text);
        }
        index
    }

    /// The overlay with more files over it (later entries win).
    pub fn overlay_with(&self, more: &HashMap<String, String>) -> HashMap<String, String> {
        let mut o = self.overlay.clone();
        o.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())));
        o
    }
}

/// Opens tasks' repositories: relative paths against `repo_root`, checkouts in
/// `cache` (see the module docs).
pub struct Workspaces {
    repo_root: PathBuf,
    cache: PathBuf,
    trees: Mutex<BTreeMap<(PathBuf, String), PathBuf>>,
}

impl Workspaces {
    pub fn new(repo_root: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> Self {
        Self {
            repo_root: repo_root.into(),
            cache: cache.into(),
            trees: Mutex::new(BTreeMap::new()),
        }
    }

    /// Where `repo` is on this machine.
    pub fn repo_path(&self, repo: &RepoRef) -> PathBuf {
        let p = Path::new(&repo.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.repo_root.join(p)
        }
    }

    /// Checks before a long run that the tasks' repositories are here. Every
    /// one missing is an error that names the first and the root they were
    /// looked for under (a wrong `--repo-root` should not cost a run that
    /// skips every task); some missing returns those paths, for a warning.
    pub fn check_repos<'a>(
        &self,
        repos: impl IntoIterator<Item = &'a RepoRef>,
    ) -> Result<Vec<PathBuf>, WorkspaceError> {
        let mut paths: Vec<PathBuf> = repos.into_iter().map(|r| self.repo_path(r)).collect();
        paths.sort();
        paths.dedup();
        let missing: Vec<PathBuf> = paths.iter().filter(|p| !p.is_dir()).cloned().collect();
        if !paths.is_empty() && missing.len() == paths.len() {
            return Err(WorkspaceError::NoRepos {
                first: missing[0].clone(),
                root: self.repo_root.clone(),
                count: missing.len(),
            });
        }
        Ok(missing)
    }

    /// The task's tree: the repository (at its commit) with its patch laid over.
    pub fn open(&self, repo: &RepoRef) -> Result<TaskTree, WorkspaceError> {
        let path = self.repo_path(repo);
        if !path.is_dir() {
            return Err(WorkspaceError::RepoMissing(path));
        }
        let root = match &repo.commit {
            None => path.clone(),
            Some(commit) => self.checkout(&path, commit)?,
        };
        let mut tree = TaskTree {
            root,
            overlay: HashMap::new(),
        };
        if let Some(patch) = &repo.patch {
            let bad = |message: String| WorkspaceError::Patch {
                repo: path.clone(),
                message,
            };
            let parsed = parse_patch(patch).map_err(|e| bad(e.to_string()))?;
            let changes =
                apply_patch(&parsed, &|p| tree.read(p)).map_err(|e| bad(e.to_string()))?;
            for c in changes {
                tree.overlay.insert(c.path, c.new);
            }
        }
        Ok(tree)
    }

    /// `repo` at `commit`, checked out once into the cache.
    fn checkout(&self, repo: &Path, commit: &str) -> Result<PathBuf, WorkspaceError> {
        let full = resolve_commit(repo, commit).ok_or_else(|| WorkspaceError::CommitMissing {
            repo: repo.to_path_buf(),
            commit: commit.to_string(),
        })?;
        let canonical = repo.canonicalize().unwrap_or_else(|_| repo.to_path_buf());
        let key = (canonical.clone(), full.clone());
        let mut trees = self.trees.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = trees.get(&key) {
            return Ok(t.clone());
        }
        let digest = Sha256::digest(format!("{}\0{full}", canonical.display()).as_bytes());
        let name: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
        let dest = self.cache.join(&name);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WorkspaceError::Io { path, source }
        };
        if !dest.join(".basis-checkout").is_file() {
            std::fs::create_dir_all(&self.cache).map_err(io(&self.cache))?;
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .tempdir_in(&self.cache)
                .map_err(io(&self.cache))?;
            let index = tmp.path().join(".basis-index");
            let env = [("GIT_INDEX_FILE", index.as_path())];
            let work_tree = format!("--work-tree={}", tmp.path().display());
            for args in [
                vec!["read-tree", full.as_str()],
                vec![work_tree.as_str(), "checkout-index", "--all", "--force"],
            ] {
                let out = git(&canonical, &args, &env).map_err(|e| WorkspaceError::Git {
                    repo: repo.to_path_buf(),
                    message: format!("cannot run git: {e}"),
                })?;
                if !out.status.success() {
                    return Err(WorkspaceError::Git {
                        repo: repo.to_path_buf(),
                        message: format!(
                            "checking out {commit}: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    });
                }
            }
            std::fs::remove_file(&index).map_err(io(&index))?;
            std::fs::write(tmp.path().join(".basis-checkout"), format!("{full}\n"))
                .map_err(io(tmp.path()))?;
            let kept = tmp.keep();
            // Another process may have finished the same checkout meanwhile.
            if std::fs::rename(&kept, &dest).is_err() {
                let _ = std::fs::remove_dir_all(&kept);
                if !dest.join(".basis-checkout").is_file() {
                    return Err(WorkspaceError::Io {
                        path: dest,
                        source: std::io::Error::other("could not put the checkout in place"),
                    });
                }
            }
        }
        trees.insert(key, dest.clone());
        Ok(dest)
    }
}

/// Runs git in `dir` as a test's committer; its trimmed output, failing the
/// test when git fails.
#[cfg(test)]
pub(crate) fn test_git(dir: &Path, args: &[&str]) -> String {
    let out = git(
        dir,
        &[&["-c", "user.name=t", "-c", "user.email=t@t"], args].concat(),
        &[],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) -> String {
        test_git(dir, args)
    }

    #[test]
    fn a_commit_is_checked_out_beside_the_repository_which_stays_untouched() {
        let repo = tempfile::tempdir().unwrap();
        sh(repo.path(), &["init", "-q"]);
        std::fs::write(repo.path().join("a.py"), "x = 1\n").unwrap();
        sh(repo.path(), &["add", "."]);
        sh(repo.path(), &["commit", "-qm", "one"]);
        let first = sh(repo.path(), &["rev-parse", "HEAD"]);
        std::fs::write(repo.path().join("a.py"), "x = 2\n").unwrap();
        sh(repo.path(), &["commit", "-qam", "two"]);
        std::fs::write(repo.path().join("a.py"), "x = 3  # unsaved work\n").unwrap();
        let status_before = sh(repo.path(), &["status", "--porcelain"]);

        let cache = tempfile::tempdir().unwrap();
        let ws = Workspaces::new(repo.path(), cache.path());
        let r = RepoRef {
            path: ".".into(),
            commit: Some(first[..8].into()),
            patch: Some("--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 10\n".into()),
        };
        let tree = ws.open(&r).unwrap();
        assert_ne!(tree.root, repo.path());
        assert_eq!(
            std::fs::read_to_string(tree.root.join("a.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(tree.read("a.py").unwrap(), "x = 10\n");
        // The user's tree, index and worktrees are as they were.
        assert_eq!(
            std::fs::read_to_string(repo.path().join("a.py")).unwrap(),
            "x = 3  # unsaved work\n"
        );
        assert_eq!(sh(repo.path(), &["status", "--porcelain"]), status_before);
        assert_eq!(sh(repo.path(), &["worktree", "list"]).lines().count(), 1);
        // Opened again: the same checkout.
        assert_eq!(ws.open(&r).unwrap().root, tree.root);
        // A missing commit, a missing repository, a patch that does not apply.
        let missing = RepoRef {
            commit: Some("0123456789abcdef".into()),
            patch: None,
            ..r.clone()
        };
        assert!(matches!(
            ws.open(&missing),
            Err(WorkspaceError::CommitMissing { .. })
        ));
        let gone = RepoRef {
            path: "no/such/repo".into(),
            ..r.clone()
        };
        assert_eq!(
            ws.check_repos([&r, &gone]).unwrap(),
            vec![ws.repo_path(&gone)]
        );
        let err = ws.check_repos([&gone, &gone]).unwrap_err().to_string();
        assert!(
            err.contains("--repo-root") && err.contains("no/such/repo"),
            "{err}"
        );
        assert!(matches!(
            ws.open(&gone),
            Err(WorkspaceError::RepoMissing(_))
        ));
        let bad = RepoRef {
            patch: Some("--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-nope\n+x\n".into()),
            ..r
        };
        assert!(matches!(ws.open(&bad), Err(WorkspaceError::Patch { .. })));
    }
}
