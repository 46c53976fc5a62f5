//! Reading `/proc` files cheaply and repeatably.
//!
//! A file is opened once and re-read with `pread` at offset 0 on every sample: the kernel
//! regenerates a seq_file's text on a read from offset 0, so this returns fresh counters while
//! saving the path walk of an `open` per file per sample (the dominant cost at high rates).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A `/proc` (or `/sys`) file held open and re-read from the start on each sample.
#[derive(Debug)]
pub struct ProcFile {
    path: PathBuf,
    file: File,
}

impl ProcFile {
    /// Opens `path`; the error names the file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file =
            File::open(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Ok(ProcFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The path this file was opened from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the whole current content, using `buf` as scratch space (it only grows).
    ///
    /// `buf` is kept initialised to its full length so that no read pays for zeroing it; an
    /// earlier version zeroed the spare capacity on every read and spent half of a sample's
    /// user-space instructions in `memset` (callgrind).
    pub fn read<'a>(&self, buf: &'a mut Vec<u8>) -> io::Result<&'a [u8]> {
        if buf.len() < 4096 {
            buf.resize(4096, 0);
        }
        let mut len = 0;
        loop {
            if len == buf.len() {
                buf.resize(2 * len, 0);
            }
            match self.file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => return Ok(&buf[..len]),
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads a small text file whole, trimmed (for metadata such as the hostname); `None` if absent.
pub fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}
