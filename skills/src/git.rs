//! What changed in a repository against a git revision: the input of review.
//! Only `git` itself runs here (never the repository's code); unsaved editor
//! buffers are laid over the files on disk.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use crate::diff::FileChange;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0} is not inside a git repository")]
    NotARepository(String),
    #[error("`{rev}` is not a revision of {repo}: {message}")]
    BadRevision {
        repo: String,
        rev: String,
        message: String,
    },
    #[error("running git: {0}")]
    Run(String),
}

/// Files larger than this are left out of a review (their change is too big to
/// read, or they are data).
const MAX_FILE_BYTES: usize = 1 << 20;

fn git(repo: &Path, args: &[&str]) -> Result<std::process::Output, GitError> {
    #[allow(clippy::disallowed_methods)] // git is the user's tool, not generated code
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| GitError::Run(format!("git {}: {e}", args.join(" "))))
}

fn lines_z(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The changes of the working tree (with `overlay`, relative path → text, laid
/// over the files on disk) against revision `base`: modified, added (including
/// untracked, not ignored) and deleted files, sorted by path. Binary and huge
/// files are left out. An overlay entry whose file is neither on disk nor in
/// `base` is left out too: an editor's buffer of a file deleted since (editors
/// keep a closed file's document for minutes) is not a change of the repository.
pub fn changes(
    repo: &Path,
    base: &str,
    overlay: &HashMap<String, String>,
) -> Result<Vec<FileChange>, GitError> {
    let top = git(repo, &["rev-parse", "--show-toplevel"])?;
    if !top.status.success() {
        return Err(GitError::NotARepository(repo.display().to_string()));
    }
    let verify = git(
        repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{base}^{{commit}}"),
        ],
    )?;
    if !verify.status.success() {
        return Err(GitError::BadRevision {
            repo: repo.display().to_string(),
            rev: base.into(),
            message: "no such commit".into(),
        });
    }
    let mut paths: BTreeSet<String> = BTreeSet::new();
    let diff = git(
        repo,
        &["diff", "--name-only", "-z", "--relative", base, "--"],
    )?;
    if !diff.status.success() {
        return Err(GitError::Run(
            String::from_utf8_lossy(&diff.stderr).into_owned(),
        ));
    }
    paths.extend(lines_z(&diff.stdout));
    let untracked = git(repo, &["ls-files", "--others", "--exclude-standard", "-z"])?;
    paths.extend(lines_z(&untracked.stdout));
    // A tracked file deleted from disk is in the diff already.
    paths.extend(overlay.keys().filter(|p| repo.join(p).exists()).cloned());
    // A path that resolves outside the repository (a link pointing out, or into
    // a linked folder) is absent, and so is a link to a file inside: that file
    // is reviewed by its own path. Nothing is read through a link.
    let ws = basis_code::Workspace::new(repo);
    paths.retain(|p| ws.locate(Path::new(p)).is_ok_and(|inside| inside.rel == *p));
    let mut out = Vec::new();
    for path in paths {
        let show = git(repo, &["show", &format!("{base}:./{path}")])?;
        let old = if show.status.success() {
            show.stdout
        } else {
            Vec::new()
        };
        let new = match overlay.get(&path) {
            Some(text) => text.clone().into_bytes(),
            None => std::fs::read(ws.root().join(&path)).unwrap_or_default(),
        };
        if old == new || old.len().max(new.len()) > MAX_FILE_BYTES {
            continue;
        }
        let (Ok(old), Ok(new)) = (String::from_utf8(old), String::from_utf8(new)) else {
            continue; // binary
        };
        out.push(FileChange { path, old, new });
    }
    Ok(out)
}

/// The messages of the commits from `base` (exclusive) to HEAD, newest first;
/// empty when there are none or git cannot tell.
pub fn messages_since(repo: &Path, base: &str) -> String {
    git(repo, &["log", "--format=%B", &format!("{base}..HEAD")])
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let out = git(dir, args).unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn changes_see_edits_new_files_deletions_and_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sh(d, &["init", "-q"]);
        std::fs::write(d.join("a.py"), "x = 1\n").unwrap();
        std::fs::write(d.join("gone.py"), "y = 2\n").unwrap();
        std::fs::write(d.join("same.py"), "z = 3\n").unwrap();
        sh(d, &["add", "."]);
        sh(
            d,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-qm",
                "init",
            ],
        );
        std::fs::write(d.join("a.py"), "x = 2\n").unwrap();
        std::fs::remove_file(d.join("gone.py")).unwrap();
        std::fs::write(d.join("new.py"), "print(1)\n").unwrap();
        std::fs::write(d.join("bin.dat"), [0xff, 0xfe, 0x00]).unwrap();
        let overlay = HashMap::from([
            ("same.py".to_string(), "z = 4\n".to_string()),
            // The buffer of a file never committed and deleted since.
            ("deleted_since.py".to_string(), "w = 5\n".to_string()),
        ]);
        let c = changes(d, "HEAD", &overlay).unwrap();
        let paths: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["a.py", "gone.py", "new.py", "same.py"]);
        assert_eq!(c[0].old, "x = 1\n");
        assert_eq!(c[0].new, "x = 2\n");
        assert_eq!(c[1].new, "");
        assert_eq!(c[2].old, "");
        assert_eq!(c[3].new, "z = 4\n");
        assert!(matches!(
            changes(d, "nope", &HashMap::new()),
            Err(GitError::BadRevision { .. })
        ));
        let plain = tempfile::tempdir().unwrap();
        assert!(matches!(
            changes(plain.path(), "HEAD", &HashMap::new()),
            Err(GitError::NotARepository(_))
        ));
    }
}
