//! The workspace boundary: the one place that decides whether a path, or a
//! `file:` URI, is inside a workspace. The server, the CLI, the evaluator, the
//! miner, the trainer and the feedback store all ask [`Workspace::locate`]
//! before a file is read into a prompt, indexed, stored or named in an edit.
//!
//! A path is inside only if its canonical form (symlinks resolved, `.` and `..`
//! removed, in that order, as the kernel would) lies under the canonical root.
//! A path that does not exist yet (a test file to create) is resolved through
//! its deepest existing ancestor, and the rest must be plain names. So:
//! - a symlink whose target is outside is outside, wherever it sits;
//! - a dangling symlink is outside: writing through it would create its target;
//! - a symlink whose target is inside is the file it points to, known by the
//!   target's one relative path ([`Inside::rel`]);
//! - URIs are percent-decoded first, so `%2e%2e` is `..`.
//!
//! What this cannot close: a file swapped for a link between the check and the
//! read by someone who can already write to the workspace.

use std::path::{Component, Path, PathBuf};

/// A workspace root, canonical when it exists (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    root: PathBuf,
    /// False when the root could not be resolved: then nothing is inside.
    exists: bool,
}

/// A path inside a workspace, known by one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inside {
    /// The canonical absolute path (the target of any link on the way).
    pub path: PathBuf,
    /// Relative to the root with `/` separators; empty for the root itself.
    pub rel: String,
}

/// Why a path or URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} is not a file: URI")]
    NotAFileUri(String),
    #[error(
        "{path} is outside the workspace {root} (after following symlinks and `..`); \
         Basis reads, indexes and edits only files inside the workspace"
    )]
    Outside { path: String, root: String },
}

impl Workspace {
    /// The workspace at `root`, canonicalized when it exists. A root that does
    /// not exist holds nothing: no existing path resolves under it.
    pub fn new(root: &Path) -> Workspace {
        match root.canonicalize() {
            Ok(root) => Workspace { root, exists: true },
            Err(_) => Workspace {
                root: root.to_path_buf(),
                exists: false,
            },
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` (absolute, or relative to the root) if it is inside; existing or not.
    pub fn locate(&self, path: &Path) -> Result<Inside, Refused> {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        };
        let outside = || Refused::Outside {
            path: path.display().to_string(),
            root: self.root.display().to_string(),
        };
        if !self.exists {
            return Err(outside());
        }
        let canonical = resolve(&abs).ok_or_else(outside)?;
        let rel = self.lexical(&canonical).ok_or_else(outside)?;
        Ok(Inside {
            path: canonical,
            rel,
        })
    }

    /// A `file:` URI (percent-encoded) if the file it names is inside.
    pub fn locate_uri(&self, uri: &str) -> Result<Inside, Refused> {
        let path = path_of_uri(uri).ok_or_else(|| Refused::NotAFileUri(uri.to_string()))?;
        self.locate(&path).map_err(|e| match e {
            Refused::Outside { root, .. } => Refused::Outside {
                path: uri.to_string(),
                root,
            },
            e => e,
        })
    }

    /// The text of an existing regular file inside the workspace; `None` when it
    /// is outside, missing, not a file, or not UTF-8.
    pub fn read(&self, path: &Path) -> Option<String> {
        let inside = self.locate(path).ok()?;
        std::fs::read_to_string(inside.path).ok()
    }

    /// The relative path of `path` by its components alone, without looking at
    /// the disk: for paths this code made itself by walking down from the root
    /// without following links (the index's walk), and for [`Workspace::locate`]'s
    /// canonical results. `None` when it is not under the root, or climbs with `..`.
    #[allow(clippy::disallowed_methods)] // The one place that compares paths to a root.
    pub fn lexical(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
                Component::CurDir => {}
                _ => return None,
            }
        }
        Some(parts.join("/"))
    }
}

/// The canonical form of `abs`, existing or not (see the module docs); `None`
/// for a dangling symlink on the way or a `..` below the deepest existing folder.
fn resolve(abs: &Path) -> Option<PathBuf> {
    let mut existing = abs.to_path_buf();
    let mut tail: Vec<std::ffi::OsString> = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for name in tail.iter().rev() {
                    out.push(name);
                }
                return Some(out);
            }
            // Something is there, yet it does not resolve: a dangling link (or a
            // loop). Writing through it would create its target; refuse.
            Err(_) if std::fs::symlink_metadata(&existing).is_ok() => return None,
            Err(_) => {}
        }
        match existing.components().next_back()? {
            Component::Normal(name) => tail.push(name.to_os_string()),
            Component::CurDir => {}
            _ => return None,
        }
        if !existing.pop() {
            return None;
        }
    }
}

/// The path a `file:` URI names, percent-decoded: `file:///a/b`,
/// `file://localhost/a/b`, any case of the scheme. `None` for other schemes,
/// other hosts, a relative path, or an encoded NUL.
pub fn path_of_uri(uri: &str) -> Option<PathBuf> {
    let (scheme, rest) = uri.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("file") {
        return None;
    }
    let rest = rest.strip_prefix("//")?;
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => return None,
    };
    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
        return None;
    }
    // A query or fragment is not part of the path.
    let path = path.split(['?', '#']).next().unwrap_or("");
    let bytes = percent_decode(path)?;
    if bytes.contains(&0) {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
    }
    #[cfg(not(unix))]
    {
        Some(PathBuf::from(String::from_utf8(bytes).ok()?))
    }
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace `ws` beside a folder `outside` holding a canary, with links
    /// out of the workspace and within it.
    fn hostile() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let out = dir.path().join("outside");
        std::fs::create_dir_all(ws.join("src")).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(ws.join("src/a.py"), "inside\n").unwrap();
        std::fs::write(out.join("secret.py"), "canary\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink(out.join("secret.py"), ws.join("link.py")).unwrap();
            symlink(&out, ws.join("linkdir")).unwrap();
            symlink(ws.join("src/a.py"), ws.join("alias.py")).unwrap();
            symlink(out.join("nothing-yet.py"), ws.join("dangling.py")).unwrap();
        }
        let w = Workspace::new(&ws);
        (dir, w)
    }

    #[test]
    fn plain_paths_inside_are_inside_and_known_by_their_relative_path() {
        let (_d, w) = hostile();
        let a = w.locate(Path::new("src/a.py")).unwrap();
        assert_eq!(a.rel, "src/a.py");
        assert_eq!(w.locate(&w.root().join("src/./a.py")).unwrap(), a);
        assert_eq!(w.locate(&w.root().join("src/../src/a.py")).unwrap(), a);
        // Not there yet, but would be created inside.
        assert_eq!(
            w.locate(Path::new("src/new/test_a.py")).unwrap().rel,
            "src/new/test_a.py"
        );
        assert_eq!(w.locate(w.root()).unwrap().rel, "");
        assert_eq!(w.read(Path::new("src/a.py")).as_deref(), Some("inside\n"));
    }

    #[cfg(unix)]
    #[test]
    fn links_and_dots_that_leave_are_outside_and_links_within_are_their_target() {
        let (_d, w) = hostile();
        for p in [
            "link.py",
            "linkdir/secret.py",
            "linkdir/new.test.py",
            "dangling.py",
            "../outside/secret.py",
            "src/../../outside/secret.py",
            "src/nothing/../../../outside/x.py",
            "/etc/passwd",
        ] {
            let r = w.locate(Path::new(p));
            assert!(
                matches!(r, Err(Refused::Outside { .. })),
                "{p} was let in: {r:?}"
            );
            assert_eq!(w.read(Path::new(p)), None, "{p}");
        }
        assert_eq!(w.locate(Path::new("alias.py")).unwrap().rel, "src/a.py");
    }

    #[test]
    fn uris_are_decoded_before_the_check() {
        let (_d, w) = hostile();
        let root = w.root().display().to_string();
        let ok = w.locate_uri(&format!("file://{root}/src/a.py")).unwrap();
        assert_eq!(ok.rel, "src/a.py");
        assert_eq!(
            w.locate_uri(&format!("FILE://localhost{root}//src/%61.py"))
                .unwrap(),
            ok
        );
        for bad in [
            format!("file://{root}/../outside/secret.py"),
            format!("file://{root}/%2e%2e/outside/secret.py"),
            format!("file://{root}/%2E%2E/outside/secret.py"),
            format!("file://{root}/src/%2e%2e/%2e%2e/outside/secret.py"),
            format!("file://{root}//..//outside/secret.py"),
        ] {
            assert!(
                matches!(w.locate_uri(&bad), Err(Refused::Outside { .. })),
                "{bad}"
            );
        }
        for not_a_file in [
            "untitled:Untitled-1".to_string(),
            format!("file://otherhost{root}/src/a.py"),
            format!("file://{root}/src/a%00.py"),
            format!("file://{root}/src/a%zz.py"),
            "file:relative/a.py".to_string(),
        ] {
            assert!(
                matches!(w.locate_uri(&not_a_file), Err(Refused::NotAFileUri(_))),
                "{not_a_file}"
            );
        }
    }

    #[test]
    fn a_missing_root_holds_nothing() {
        let w = Workspace::new(Path::new("/nonexistent/basis-root"));
        assert!(w.locate(Path::new("a.py")).is_err());
        assert!(w.locate(Path::new("/etc/passwd")).is_err());
    }
}
