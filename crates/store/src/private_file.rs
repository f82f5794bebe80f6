//! Private files (keys, tokens, exported secrets), written so that nobody
//! else can read them and nobody can redirect them.
//!
//! The bytes go to a fresh temporary file in the final directory, opened
//! with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600: a file or symlink
//! planted at that name makes the open fail instead of being followed or
//! reused. The temporary file is synced, then renamed over the final path
//! (replacing a symlink found there, never writing through it) or, for
//! [`create_new`], hard-linked to it so an existing file is never replaced.
//! Readers therefore see the old content or the new, never a partial file.
//! Used by the server's data dir and by the client's files alike.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// Mode of every private file.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of a directory created to hold one.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Writes `bytes` to `path` with mode 0600, replacing what is there.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, file_name) = split(path)?;
    create_dir(dir)?;
    write_through(
        path,
        &temporary_path(dir, file_name),
        bytes,
        Finish::Replace,
    )
    .map(|_| ())
}

/// Writes `bytes` to `path` with mode 0600 unless something is already
/// there: `Ok(false)` then, and the existing file is left alone (the caller
/// reads it; of two processes creating one key, both end up with the first).
pub fn create_new(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let (dir, file_name) = split(path)?;
    create_dir(dir)?;
    write_through(path, &temporary_path(dir, file_name), bytes, Finish::Link)
}

/// Creates `path` as an empty private file unless something is already
/// there; whether it created it. For files another library fills in place
/// (the SQLite database).
pub fn create_empty(path: &Path) -> io::Result<bool> {
    match open_exclusive(path) {
        Ok(file) => {
            file.sync_all()?;
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err),
    }
}

/// How the temporary file becomes the final one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// `rename`: replaces the final path, whatever it is.
    Replace,
    /// `link`: fails when the final path exists.
    Link,
}

fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let file_name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a file path", path.display()),
        )
    })?;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((dir, file_name))
}

/// Creates `dir` (and missing parents) with mode 0700 when absent; an
/// existing dir keeps its mode.
fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// `.NAME.PID.RANDOM.tmp` beside the final file: unpredictable, so a
/// planted file can only make a write fail, and hidden from globs.
fn temporary_path(dir: &Path, file_name: &OsStr) -> PathBuf {
    let mut random = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let random: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    dir.join(format!(
        ".{}.{}.{random}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ))
}

/// Opens a new file at `path` with mode 0600; fails on anything already
/// there, a symlink included (`O_EXCL`, and `O_NOFOLLOW` to say so).
fn open_exclusive(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    // The umask may have cleared owner bits; group and others get none either way.
    file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
    Ok(file)
}

fn write_through(path: &Path, temporary: &Path, bytes: &[u8], finish: Finish) -> io::Result<bool> {
    let mut file = open_exclusive(temporary)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        let created = match finish {
            Finish::Replace => fs::rename(temporary, path).map(|()| true),
            Finish::Link => match fs::hard_link(temporary, path) {
                Ok(()) => Ok(true),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(err) => Err(err),
            },
        }?;
        if finish == Finish::Link {
            fs::remove_file(temporary)?;
        }
        // The rename or link itself survives a crash once the dir is synced.
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(created)
    })();
    if result.is_err() {
        let _ = fs::remove_file(temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn writes_mode_0600_in_a_created_0700_dir_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/config.toml");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("nested")), 0o700);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(leftovers(path.parent().unwrap()).is_empty());
    }

    #[test]
    fn an_existing_readable_file_is_replaced_by_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.env");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_symlink_at_the_final_path_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        fs::write(&target, "precious").unwrap();
        let path = dir.path().join("out.env");
        symlink(&target, &path).unwrap();
        write(&path, b"secret").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_symlink_planted_at_the_temporary_name_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        fs::write(&target, "precious").unwrap();
        let path = dir.path().join("out.env");
        let temporary = dir.path().join(".out.env.planted.tmp");
        symlink(&target, &temporary).unwrap();
        let err = write_through(&path, &temporary, b"secret", Finish::Replace).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert!(!path.exists(), "nothing is written to the final path");
        // A dangling symlink (to a file that does not exist yet) is refused too.
        let absent = dir.path().join("absent");
        let dangling = dir.path().join(".out.env.dangling.tmp");
        symlink(&absent, &dangling).unwrap();
        assert!(write_through(&path, &dangling, b"secret", Finish::Replace).is_err());
        assert!(!absent.exists());
    }

    #[test]
    fn a_plain_file_planted_at_the_temporary_name_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.env");
        let temporary = dir.path().join(".out.env.planted.tmp");
        fs::write(&temporary, "attacker's").unwrap();
        fs::set_permissions(&temporary, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(write_through(&path, &temporary, b"secret", Finish::Replace).is_err());
        assert_eq!(fs::read_to_string(&temporary).unwrap(), "attacker's");
        assert!(!path.exists());
    }

    #[test]
    fn create_new_keeps_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        assert!(create_new(&path, b"first").unwrap());
        assert!(!create_new(&path, b"second").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(mode(&path), 0o600);
        assert!(leftovers(dir.path()).is_empty());
        // A symlink at the final path counts as taken and is not written through.
        let target = dir.path().join("victim");
        fs::write(&target, "precious").unwrap();
        let linked = dir.path().join("linked-key");
        symlink(&target, &linked).unwrap();
        assert!(!create_new(&linked, b"key").unwrap());
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    }

    #[test]
    fn create_empty_makes_a_private_file_once_and_refuses_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchboard.db");
        assert!(create_empty(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
        fs::write(&path, "data").unwrap();
        assert!(!create_empty(&path).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "data");
        let absent = dir.path().join("absent");
        let dangling = dir.path().join("dangling.db");
        symlink(&absent, &dangling).unwrap();
        assert!(!create_empty(&dangling).unwrap());
        assert!(!absent.exists(), "a dangling symlink is not followed");
    }
}
