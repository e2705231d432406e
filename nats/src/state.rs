//! Small state files written atomically: a temporary file, `fsync`, rename over the old
//! one, `fsync` of the directory. After a crash the file holds either the old or the new
//! contents, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Replaces `path` with `contents`, durably.
pub(crate) fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    let tmp = temporary_name(path);
    let result = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(parent(path))
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::state(path, e)
    })
}

/// Removes `path` durably, if it exists.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(parent(path)).map_err(|e| Error::state(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::state(path, e)),
    }
}

/// Syncs directory `dir`, so that the names created, renamed or removed in it last through a crash.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory of `path` (`.` for a bare name).
pub(crate) fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The contents of `path`, or `None` if it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::state(path, e)),
    }
}

fn temporary_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Parses `key=value` lines into a lookup; lines without `=` are ignored.
pub(crate) fn fields<'t>(text: &'t str) -> impl Fn(&str) -> Option<&'t str> + 't {
    move |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replaces_contents_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        assert_eq!(read(&path).unwrap(), None);
        write_atomic(&path, "next=24\n").unwrap();
        write_atomic(&path, "next=64\n").unwrap();
        assert_eq!(read(&path).unwrap().as_deref(), Some("next=64\n"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let text = read(&path).unwrap().unwrap();
        assert_eq!(fields(&text)("next"), Some("64"));
        assert_eq!(fields(&text)("other"), None);
    }

    #[test]
    fn remove_takes_the_file_away_and_a_missing_one_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        write_atomic(&path, "before=1\n").unwrap();
        remove(&path).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        remove(&path).unwrap();
        assert_eq!(parent(Path::new("bare")), Path::new("."));
        assert_eq!(parent(Path::new("a/b")), Path::new("a"));
    }

    #[test]
    fn a_missing_directory_is_a_state_error() {
        let err = write_atomic(Path::new("/nonexistent-dir/cursor"), "x").unwrap_err();
        assert!(matches!(err, Error::State { .. }), "{err}");
    }
}
