//! Just enough of ELF64 (little-endian) to build a guest image: a program's interpreter, which
//! says whether it is statically linked, and a kernel module's `.modinfo` strings, which name
//! its dependencies. Reading them here needs no `file`, `readelf` or `modinfo` on the host.

use anyhow::{Context, bail};

/// `PT_INTERP`: the program header naming the dynamic loader.
const PT_INTERP: u32 = 3;

/// Checks the ELF identification bytes: 64-bit little-endian.
fn check(data: &[u8], what: &str) -> anyhow::Result<()> {
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        bail!("{what} is not an ELF file");
    }
    if data[4] != 2 || data[5] != 1 {
        bail!("{what} is not a 64-bit little-endian ELF file (only x86_64 guests are built)");
    }
    Ok(())
}

fn bytes<'a>(data: &'a [u8], at: u64, len: u64, what: &str) -> anyhow::Result<&'a [u8]> {
    let start = usize::try_from(at).ok();
    let end = start.and_then(|s| s.checked_add(usize::try_from(len).ok()?));
    match (start, end) {
        (Some(s), Some(e)) if e <= data.len() => Ok(&data[s..e]),
        _ => bail!("{what}: truncated ELF file (a header points past its end)"),
    }
}

fn u16_at(data: &[u8], at: u64, what: &str) -> anyhow::Result<u16> {
    let b = bytes(data, at, 2, what)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: u64, what: &str) -> anyhow::Result<u32> {
    let b = bytes(data, at, 4, what)?;
    Ok(u32::from_le_bytes(b.try_into().context("slice of 4")?))
}

fn u64_at(data: &[u8], at: u64, what: &str) -> anyhow::Result<u64> {
    let b = bytes(data, at, 8, what)?;
    Ok(u64::from_le_bytes(b.try_into().context("slice of 8")?))
}

/// The dynamic loader a program asks for (`/lib64/ld-linux-x86-64.so.2`), or `None` for a
/// statically linked one. `what` names the file in errors.
pub fn interpreter(data: &[u8], what: &str) -> anyhow::Result<Option<String>> {
    check(data, what)?;
    let phoff = u64_at(data, 0x20, what)?;
    let phentsize = u64::from(u16_at(data, 0x36, what)?);
    let phnum = u64::from(u16_at(data, 0x38, what)?);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(data, ph, what)? == PT_INTERP {
            let off = u64_at(data, ph + 8, what)?;
            let size = u64_at(data, ph + 32, what)?;
            let raw = bytes(data, off, size, what)?;
            let path = raw.split(|b| *b == 0).next().unwrap_or_default();
            return Ok(Some(String::from_utf8_lossy(path).into_owned()));
        }
    }
    Ok(None)
}

/// Whether an uncompressed kernel (`vmlinux`) has a PVH entry point (the Xen ELF note
/// `XEN_ELFNOTE_PHYS32_ENTRY`), which qemu needs to boot it directly with `-kernel`.
pub fn has_pvh_entry(data: &[u8], what: &str) -> anyhow::Result<bool> {
    const PT_NOTE: u32 = 4;
    const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
    check(data, what)?;
    let phoff = u64_at(data, 0x20, what)?;
    let phentsize = u64::from(u16_at(data, 0x36, what)?);
    let phnum = u64::from(u16_at(data, 0x38, what)?);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(data, ph, what)? != PT_NOTE {
            continue;
        }
        let off = u64_at(data, ph + 8, what)?;
        let size = u64_at(data, ph + 32, what)?;
        let notes = bytes(data, off, size, what)?;
        // Each note: namesz, descsz, type, then name and desc, each padded to 4 bytes.
        let mut at = 0u64;
        while at + 12 <= size {
            let namesz = u64::from(u32_at(notes, at, what)?);
            let descsz = u64::from(u32_at(notes, at + 4, what)?);
            let kind = u32_at(notes, at + 8, what)?;
            let name = bytes(notes, at + 12, namesz, what)?;
            if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.starts_with(b"Xen") {
                return Ok(true);
            }
            at += 12 + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
    }
    Ok(false)
}

/// The contents of the section called `name`, if the file has one.
fn section<'a>(data: &'a [u8], name: &str, what: &str) -> anyhow::Result<Option<&'a [u8]>> {
    check(data, what)?;
    let shoff = u64_at(data, 0x28, what)?;
    let shentsize = u64::from(u16_at(data, 0x3A, what)?);
    let shnum = u64::from(u16_at(data, 0x3C, what)?);
    let shstrndx = u64::from(u16_at(data, 0x3E, what)?);
    if shnum == 0 {
        return Ok(None);
    }
    let header = |i: u64| shoff + i * shentsize;
    let names_off = u64_at(data, header(shstrndx) + 24, what)?;
    let names_size = u64_at(data, header(shstrndx) + 32, what)?;
    let names = bytes(data, names_off, names_size, what)?;
    for i in 0..shnum {
        let sh = header(i);
        let name_at = u32_at(data, sh, what)? as usize;
        let this = names
            .get(name_at..)
            .and_then(|s| s.split(|b| *b == 0).next())
            .unwrap_or_default();
        if this == name.as_bytes() {
            let off = u64_at(data, sh + 24, what)?;
            let size = u64_at(data, sh + 32, what)?;
            return Ok(Some(bytes(data, off, size, what)?));
        }
    }
    Ok(None)
}

/// The `key=value` strings of a kernel module's `.modinfo` section.
pub fn modinfo(data: &[u8], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    let Some(info) = section(data, ".modinfo", what)? else {
        bail!("{what} has no .modinfo section: not a kernel module");
    };
    Ok(info
        .split(|b| *b == 0)
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            let (k, v) = s.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf_is_named() {
        let err = interpreter(b"#!/bin/sh\n", "/x/script").unwrap_err();
        assert_eq!(err.to_string(), "/x/script is not an ELF file");
        let mut elf32 = vec![0u8; 64];
        elf32[..4].copy_from_slice(b"\x7fELF");
        elf32[4] = 1;
        elf32[5] = 1;
        assert!(
            interpreter(&elf32, "m")
                .unwrap_err()
                .to_string()
                .contains("64-bit")
        );
    }

    #[test]
    fn truncated_headers_are_an_error_not_a_panic() {
        let mut d = vec![0u8; 64];
        d[..4].copy_from_slice(b"\x7fELF");
        d[4] = 2;
        d[5] = 1;
        d[0x20] = 0xff; // program headers far past the end
        d[0x38] = 1;
        assert!(
            interpreter(&d, "f")
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        d[0x28] = 0xff;
        d[0x3C] = 1;
        assert!(
            modinfo(&d, "f")
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    #[test]
    fn the_running_test_binary_has_the_loader_it_runs_under() {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        // Rust test binaries on glibc are dynamically linked; a static (musl) build has none.
        let interp = interpreter(&data, "exe").unwrap();
        if let Some(i) = interp {
            assert!(std::path::Path::new(&i).exists(), "{i}");
        }
    }
}
