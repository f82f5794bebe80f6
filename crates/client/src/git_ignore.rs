//! A warning for files with secrets written where git would commit them:
//! `local env --output-file .env` in a project's work tree is the usual way
//! to leak a password into a repository. Asks git itself (`git check-ignore`
//! in the file's directory), so every ignore source counts: `.gitignore`
//! files at any level, `.git/info/exclude` and the user's global excludes.

use std::path::Path;
use std::process::{Command, Stdio};

/// Prints a warning to stderr when `path` (just written, holding secrets)
/// lies in a git work tree that does not ignore it, saying how to fix that.
/// Silent when git is not installed or the directory is no work tree.
pub(crate) fn warn_if_not_ignored(path: &Path) {
    if let Some(warning) = warning(path) {
        eprintln!("warning: {warning}");
    }
}

fn warning(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    // Exit 0: ignored; 1: not ignored (tracked files are never "ignored");
    // 128: not a work tree. Anything else, or no git, says nothing.
    let ignored = git(dir, &["check-ignore", "-q", "--", name])?;
    if ignored != 1 {
        return None;
    }
    let gitignore = dir.join(".gitignore");
    let tracked = git(dir, &["ls-files", "--error-unmatch", "--", name]) == Some(0);
    Some(if tracked {
        format!(
            "{} holds secrets and git tracks it: run `git rm --cached {name}` in {}, \
             add {name} to {} and make sure no commit keeps it",
            path.display(),
            dir.display(),
            gitignore.display()
        )
    } else {
        format!(
            "{} holds secrets and git does not ignore it: add {name} to {} so it is never committed",
            path.display(),
            gitignore.display()
        )
    })
}

/// The exit code of `git ARGS` run in `dir`, or `None` when git can't run.
fn git(dir: &Path, args: &[&str]) -> Option<i32> {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .code()
}
