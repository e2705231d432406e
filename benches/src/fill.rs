//! The limits of cold appends: [`FillLimit`], the same bytes put into a fresh file's page
//! cache with nothing encoded ([`fill_once`]).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use evstream::Result;

use crate::{AppendMethod, BenchDir, LARGE_BUFFER, Scratch, Workload, io_err, io_error};

/// A limit for cold appends: the workload's stream length of bytes put into the fresh page
/// cache of a new file, with no events encoded and no checksum, 1 MiB at a time. It is
/// what any writer of that file pays at least before its own work: a mapping-based writer
/// the first-touch faults (a zeroed folio per page, the file system's page-mkwrite), a
/// `write(2)`-based one the copy into new folios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FillLimit {
    /// Create the file, preallocate its capacity (`fallocate`, as evstream's create does
    /// with `posix_fallocate`), map it shared, copy the bytes into the mapping, unmap,
    /// close.
    Mapping,
    /// As [`Mapping`](Self::Mapping), with `madvise(MADV_POPULATE_WRITE)` over the whole
    /// mapping before the copy: every page faulted in one call (as
    /// [`StreamWriter::prefault_all`](evstream::StreamWriter::prefault_all) does).
    MappingPopulated,
    /// As [`Mapping`](Self::Mapping), with `madvise(MADV_HUGEPAGE)` first (as
    /// [`WriterOptions::huge_pages`](evstream::WriterOptions::huge_pages) does), so the kernel may back it with large folios.
    MappingHugePages,
    /// Create the file, `write(2)` the bytes in 1 MiB calls, close: what `BufWriter` 1 MiB
    /// does beneath its encoding.
    Write,
}

impl FillLimit {
    /// Every fill limit.
    pub const ALL: [FillLimit; 4] = [
        FillLimit::Mapping,
        FillLimit::MappingPopulated,
        FillLimit::MappingHugePages,
        FillLimit::Write,
    ];

    /// A human-readable name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mapping => "limit: fill fresh page cache via mapping",
            Self::MappingPopulated => "limit: fill via mapping, POPULATE_WRITE",
            Self::MappingHugePages => "limit: fill via mapping, MADV_HUGEPAGE",
            Self::Write => "limit: fill fresh page cache via write(2)",
        }
    }

    /// A stable identifier for JSON.
    pub fn id(self) -> &'static str {
        match self {
            Self::Mapping => "fill_mapping",
            Self::MappingPopulated => "fill_mapping_populated",
            Self::MappingHugePages => "fill_mapping_huge_pages",
            Self::Write => "fill_write",
        }
    }

    /// The limit that bounds a cold append row with identifier `id`: the mapping fill for
    /// evstream (with huge pages, the huge-page fill), `write(2)` for the `std` systems and
    /// for the mapping fills themselves.
    pub(crate) fn for_cold_row(id: &str) -> &'static str {
        if id == AppendMethod::EvstreamHugePages.id() {
            Self::MappingHugePages.id()
        } else if id.starts_with("evstream") {
            Self::Mapping.id()
        } else {
            Self::Write.id()
        }
    }
}

/// Runs `limit` once for `workload` in a fresh file in `dir` and returns the time from
/// creating the file to closing it. The file is removed afterwards.
///
/// # Errors
///
/// [`Error::Io`](evstream::Error::Io) if creating, preallocating, mapping or writing the file fails.
pub fn fill_once(limit: FillLimit, workload: &Workload, dir: &BenchDir) -> Result<Duration> {
    let path = dir.fresh_file();
    let _scratch = Scratch(path.clone());
    let len = usize::try_from(workload.stream_len()).unwrap_or(usize::MAX);
    let block = vec![0x5a_u8; LARGE_BUFFER];
    let start = Instant::now();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create", &path))?;
    if limit == FillLimit::Write {
        for chunk in block_sizes(len, block.len()) {
            file.write_all(block.get(..chunk).unwrap_or_default())
                .map_err(io_err("write", &path))?;
        }
    } else {
        rustix::fs::fallocate(
            &file,
            rustix::fs::FallocateFlags::empty(),
            0,
            workload.capacity(),
        )
        .map_err(|e| io_error("fallocate", &path, e.into()))?;
        let mut map = map_new_file(&file, &path)?;
        match limit {
            FillLimit::MappingPopulated => map
                .advise(memmap2::Advice::PopulateWrite)
                .map_err(io_err("madvise", &path))?,
            FillLimit::MappingHugePages => {
                // Advice only, as for evstream's huge_pages option.
                let _ = map.advise(memmap2::Advice::HugePage);
            }
            FillLimit::Mapping | FillLimit::Write => {}
        }
        let mut at = 0;
        for chunk in block_sizes(len, block.len()) {
            if let Some(dst) = map.get_mut(at..at + chunk) {
                dst.copy_from_slice(block.get(..chunk).unwrap_or_default());
            }
            at += chunk;
        }
        black_box(&map);
        drop(map);
    }
    drop(file);
    Ok(start.elapsed())
}

/// Maps `file` shared and writable: a file the bench created itself with `create_new`
/// (its path given for errors), which no other process knows of and which nothing
/// truncates while the mapping lives.
pub(crate) fn map_new_file(file: &File, path: &Path) -> Result<memmap2::MmapMut> {
    // SAFETY: as the caller promises, the file is the bench's own and new: no other
    // process writes or truncates it, so the mapping's bytes change only through it.
    unsafe { memmap2::MmapMut::map_mut(file) }.map_err(io_err("mmap", path))
}

/// The sizes of the blocks that cover `len` bytes `block` bytes at a time.
fn block_sizes(len: usize, block: usize) -> impl Iterator<Item = usize> {
    let block = block.max(1);
    (0..len.div_ceil(block)).map(move |i| block.min(len - i * block))
}
