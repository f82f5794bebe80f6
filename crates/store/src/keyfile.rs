//! Key files in the data directory: created with mode 0600 when absent, and
//! refused when group- or world-readable.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rand::RngCore;

use crate::error::{StoreError, StoreResult};
use crate::private_file;

/// Reads the `len`-byte key at `path`, creating it with random bytes if
/// absent (see [`private_file::create_new`]: never through a symlink, never
/// half-written, and when two processes start on one data dir both keep the
/// key written first).
pub fn load_or_create(path: &Path, len: usize) -> StoreResult<Vec<u8>> {
    let fail = |reason: String| StoreError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    if !path.exists() {
        let mut key = vec![0u8; len];
        rand::rngs::OsRng.fill_bytes(&mut key);
        if private_file::create_new(path, &key).map_err(|err| fail(err.to_string()))? {
            return Ok(key);
        }
    }
    ensure_private(path)?;
    let key = fs::read(path).map_err(|err| fail(err.to_string()))?;
    if key.len() != len {
        return Err(fail(format!("must hold exactly {len} bytes")));
    }
    Ok(key)
}

/// Refuses a file that group or others may read.
fn ensure_private(path: &Path) -> StoreResult<()> {
    let metadata = fs::metadata(path).map_err(|err| StoreError::KeyFile {
        path: path.display().to_string(),
        reason: err.to_string(),
    })?;
    let mode = metadata.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyFile {
            path: path.display().to_string(),
            reason: format!(
                "is readable by group or others (mode {:o}); run chmod 600 on it",
                mode & 0o777
            ),
        });
    }
    Ok(())
}

/// Reads a secret text file (a token), refusing it when group- or world-readable.
pub fn read_private_text(path: &Path) -> StoreResult<String> {
    let fail = |reason: String| StoreError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    ensure_private(path)?;
    let text = fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    if text.trim().is_empty() {
        return Err(fail("is empty".to_owned()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_key_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/key");
        let first = load_or_create(&path, 32).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path, 32).unwrap(), first);
    }

    #[test]
    fn a_dangling_symlink_where_the_key_goes_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let path = dir.path().join("key");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(load_or_create(&path, 32).is_err());
        assert!(!target.exists(), "no key was written through the symlink");
    }

    #[test]
    fn refuses_group_readable_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        load_or_create(&path, 32).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_or_create(&path, 32).unwrap_err().to_string();
        assert!(err.contains("readable by group or others"), "{err}");
    }

    #[test]
    fn refuses_a_key_any_group_or_other_bit_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        load_or_create(&path, 32).unwrap();
        for mode in [0o604, 0o620, 0o602, 0o610, 0o601, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = load_or_create(&path, 32).unwrap_err().to_string();
            assert!(
                err.contains("readable by group or others"),
                "{mode:o}: {err}"
            );
        }
        // Owner-only modes are accepted.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_or_create(&path, 32).unwrap().len(), 32);
    }

    #[test]
    fn refuses_a_readable_token_file_without_printing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault-token");
        let token = "sb-marker-token-5be1c0d9";
        fs::write(&path, token).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_text(&path).unwrap_err().to_string();
        assert!(err.contains("readable by group or others"), "{err}");
        assert!(!err.contains(token), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private_text(&path).unwrap(), token);
        fs::write(&path, "  \n").unwrap();
        assert!(
            read_private_text(&path).is_err(),
            "an empty token file is refused"
        );
    }
}
