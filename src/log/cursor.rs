//! Named cursors: a consumer's position, kept durably under a name in the log directory.
//!
//! Cursor `NAME` lives in `cursors/NAME`: 24 bytes, the magic `EVCURSR1`, the packed
//! [`Position`] of the next event to consume (u64, little-endian) and a CRC-32 of those 16
//! bytes, then 4 zero bytes. A commit writes a temporary file, syncs it, renames it over
//! the old one and syncs the directory, so after a crash the cursor holds either the old
//! position or the new one, never a mix.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::failpoint::failpoint;
use crate::log::config::{create_temp, sync_dir};
use crate::log::position::Position;

/// The subdirectory of a log that holds its cursors.
pub(crate) const CURSOR_DIR: &str = "cursors";
const MAGIC: [u8; 8] = *b"EVCURSR1";
const FILE_LEN: usize = 24;

/// Checks that `name` can name a cursor: 1 to 64 of `A-Z a-z 0-9 _ - .`, not starting
/// with `.`. Every call that takes a cursor name checks it so; this tells a program (or
/// a command line) that a name will be refused before it touches a log.
///
/// # Errors
/// [`Error::BadCursor`] naming what a name may be.
///
/// # Examples
/// ```
/// assert!(evstream::check_cursor_name("billing-v2").is_ok());
/// assert!(matches!(
///     evstream::check_cursor_name("../billing"),
///     Err(evstream::Error::BadCursor { .. })
/// ));
/// ```
pub fn check_cursor_name(name: &str) -> Result<()> {
    check_name(name)
}

/// Checks a cursor name: 1 to 64 of `A-Z a-z 0-9 _ - .`, not starting with `.`.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadCursor {
            name: name.to_owned(),
            reason: "a name is 1 to 64 of A-Z a-z 0-9 _ - . and does not start with .",
        })
    }
}

fn encode(position: Position) -> [u8; FILE_LEN] {
    let mut bytes = [0u8; FILE_LEN];
    let (head, tail) = bytes.split_at_mut(16);
    let (magic, pos) = head.split_at_mut(8);
    magic.copy_from_slice(&MAGIC);
    pos.copy_from_slice(&position.as_u64().to_le_bytes());
    let crc = crc32fast::hash(head);
    if let Some(slot) = tail.get_mut(..4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

fn decode(bytes: &[u8]) -> Option<Position> {
    let bytes: &[u8; FILE_LEN] = bytes.try_into().ok()?;
    let (head, tail) = bytes.split_at(16);
    let (magic, pos) = head.split_at(8);
    let crc = u32::from_le_bytes(tail.get(..4)?.try_into().ok()?);
    if magic != MAGIC || crc32fast::hash(head) != crc || tail.get(4..) != Some(&[0u8; 4][..]) {
        return None;
    }
    Some(Position::from_u64(u64::from_le_bytes(pos.try_into().ok()?)))
}

/// Reads cursor `name` of the log in `dir`; `None` if it was never committed.
pub(crate) fn load(dir: &Path, name: &str) -> Result<Option<Position>> {
    check_name(name)?;
    let path = dir.join(CURSOR_DIR).join(name);
    let bytes = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() == FILE_LEN as u64 => {
            std::fs::read(&path).map_err(|e| Error::io("read cursor", &path, e))?
        }
        Ok(_) => Vec::new(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read cursor", &path, e)),
    };
    decode(&bytes).map(Some).ok_or_else(|| Error::BadCursor {
        name: name.to_owned(),
        reason: "the cursor file is damaged (wrong length, magic or checksum)",
    })
}

/// Commits cursor `name` of the log in `dir` at `position`, durably.
pub(crate) fn store(dir: &Path, name: &str, position: Position) -> Result<()> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    check_name(name)?;
    let cursors = dir.join(CURSOR_DIR);
    match std::fs::create_dir(&cursors) {
        Ok(()) => sync_dir(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create", &cursors, e)),
    }
    let path = cursors.join(name);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let temp = cursors.join(format!(".{name}.{}.{serial}.tmp", std::process::id()));
    let result = (|| {
        let mut file = create_temp(&temp)?;
        file.write_all(&encode(position))?;
        file.sync_all()?;
        failpoint!("cursor:before_rename");
        std::fs::rename(&temp, &path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(Error::io("commit cursor", &path, e));
    }
    failpoint!("cursor:after_rename");
    sync_dir(&cursors)
}

/// Deletes cursor `name`; `false` if there was none.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<bool> {
    check_name(name)?;
    let cursors = dir.join(CURSOR_DIR);
    let path = cursors.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(&cursors).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove cursor", &path, e)),
    }
}

/// Every cursor of the log in `dir`, by name; damaged ones are returned as errors in place.
pub(crate) fn all(dir: &Path) -> Result<Vec<(String, Result<Position>)>> {
    Ok(scan(dir)?
        .into_iter()
        .map(|(name, position)| {
            let position = position.and_then(|p| {
                p.ok_or_else(|| Error::BadCursor {
                    name: name.clone(),
                    reason: "the cursor file vanished while being read",
                })
            });
            (name, position)
        })
        .collect())
}

/// Every cursor that retention must respect, by name: its position, or `None` if its
/// file cannot be read (damaged, or not a regular file), so that where it stands is not
/// known. A cursor removed while the directory was read is left out.
pub(crate) fn holding(dir: &Path) -> Result<Vec<(String, Option<Position>)>> {
    Ok(scan(dir)?
        .into_iter()
        .filter_map(|(name, position)| match position {
            Ok(Some(p)) => Some((name, Some(p))),
            Ok(None) => None,
            Err(_) => Some((name, None)),
        })
        .collect())
}

/// The cursors in `dir`'s cursor directory, sorted by name: each as [`load`] reads it.
fn scan(dir: &Path) -> Result<Vec<(String, Result<Option<Position>>)>> {
    let cursors: PathBuf = dir.join(CURSOR_DIR);
    let entries = match std::fs::read_dir(&cursors) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &cursors, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", &cursors, e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_name(&name).is_err() {
            continue; // temporaries and foreign files
        }
        let position = load(dir, &name);
        found.push((name, position));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let p = Position::new(7, 4096).expect("in range");
        let bytes = encode(p);
        assert_eq!(decode(&bytes), Some(p));
        for i in 0..FILE_LEN * 8 {
            let mut flipped = bytes;
            if let Some(b) = flipped.get_mut(i / 8) {
                *b ^= 1 << (i % 8);
            }
            assert_eq!(decode(&flipped), None, "bit {i}");
        }
        assert_eq!(decode(&bytes[..20]), None);
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "consumer-1", "billing_v2.eu"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "../x", "with space", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
