//! The "newc" cpio format the kernel unpacks as an initramfs.
//!
//! Written by hand: the format is a 110-byte ASCII header, the name and the data, each padded
//! to four bytes, and an entry named `TRAILER!!!` at the end (the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`). A crate would add a
//! dependency for less code than its glue, and no `cpio` program is needed on the host.

use std::io::{self, Write};

/// File type bits of `st_mode`.
pub const S_IFREG: u32 = 0o100000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;

/// Writes newc entries to `out`; call [`Writer::finish`] to add the trailer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> Writer<W> {
    /// An empty archive writing to `out`.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            written: 0,
            next_ino: 1,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - self.written % 4) % 4;
        self.put(&[0u8; 3][..n as usize])
    }

    /// One entry: `name` without a leading `/`, `mode` with its type bits, the device numbers
    /// for a device node, and the data (a link's target for a symlink).
    pub fn entry(
        &mut self,
        name: &str,
        mode: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let name = name.trim_start_matches('/');
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: over 4 GiB for cpio"),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize
        // check; mtime 0 keeps the image the same from build to build.
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08X}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_kernel_documentation() {
        let mut w = Writer::new(Vec::new());
        w.entry("/init", S_IFREG | 0o755, (0, 0), b"hi\n").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(&out[..6], b"070701");
        // namesize of "init" + NUL is 5; 110 + 5 = 115, padded to 116; then 3 bytes + 1 pad.
        assert_eq!(&out[6 + 8 * 11..6 + 8 * 12], b"00000005");
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..119], b"hi\n");
        assert_eq!(out.len() % 4, 0);
        let trailer = &out[120..];
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
    }
}
