//! A structural check of a GGUF file before the real reader sees it: every length
//! and count is bounded by what is left of the file, and every tensor's data lies
//! inside it. A truncated or corrupt file then gets a clear error instead of a huge
//! allocation or a read past the end.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: u32 = 0x4655_4747; // "GGUF", little-endian

struct Cursor<R> {
    inner: R,
    pos: u64,
    len: u64,
    wide: bool,
}

impl<R: Read> Cursor<R> {
    fn bytes(&mut self, n: u64, what: &str) -> std::result::Result<Vec<u8>, String> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(format!(
                "{what} claims {n} bytes at offset {} but the file has {} bytes: truncated or corrupt",
                self.pos, self.len
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| format!("reading {what}: {e}"))?;
        self.pos += n;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        let b = self.bytes(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A count or length: u32 in GGUF v1, u64 after.
    fn count(&mut self, what: &str) -> std::result::Result<u64, String> {
        if self.wide {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.count(what)?;
        let b = self.bytes(n, what)?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    fn skip_value(&mut self, ty: u32, key: &str) -> std::result::Result<(), String> {
        match ty {
            0 | 1 | 7 => self.bytes(1, key).map(drop),
            2 | 3 => self.bytes(2, key).map(drop),
            4..=6 => self.bytes(4, key).map(drop),
            10..=12 => self.bytes(8, key).map(drop),
            8 => self.string(key).map(drop),
            9 => {
                let item_ty = self.u32(key)?;
                let n = self.count(key)?;
                let min_item = match item_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 => {
                        if self.wide {
                            8
                        } else {
                            4
                        }
                    }
                    9 => 12,
                    _ => 8,
                };
                if n.saturating_mul(min_item) > self.len - self.pos {
                    return Err(format!(
                        "array `{key}` claims {n} items, more than the file holds"
                    ));
                }
                for _ in 0..n {
                    self.skip_value(item_ty, key)?;
                }
                Ok(())
            }
            other => Err(format!("metadata `{key}` has unknown value type {other}")),
        }
    }
}

/// (block size, bytes per block) of the GGML types candle can read.
fn ggml_block(ty: u32) -> Option<(u64, u64)> {
    Some(match ty {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2K
        11 => (256, 110), // Q3K
        12 => (256, 144), // Q4K
        13 => (256, 176), // Q5K
        14 => (256, 210), // Q6K
        15 => (256, 292), // Q8K
        30 => (1, 2),     // BF16
        _ => return None,
    })
}

/// Checks the structure of a GGUF file; the error says what is wrong.
pub(crate) fn check_file(path: &Path) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    check(BufReader::new(file), len).map_err(|reason| Error::bad_file(path, reason))
}

fn check(reader: impl Read, len: u64) -> std::result::Result<(), String> {
    let mut c = Cursor {
        inner: reader,
        pos: 0,
        len,
        wide: true,
    };
    if len < 16 {
        return Err(format!("only {len} bytes long: not a GGUF file"));
    }
    if c.u32("magic")? != MAGIC {
        return Err("does not start with the GGUF magic bytes".into());
    }
    let version = c.u32("version")?;
    if !(1..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version}"));
    }
    c.wide = version >= 2;
    let tensor_count = c.count("tensor count")?;
    let kv_count = c.count("metadata count")?;
    let mut alignment = 32u64;
    for _ in 0..kv_count {
        let key = c.string("metadata key")?;
        let ty = c.u32(&key)?;
        if key == "general.alignment" && ty == 4 {
            alignment = u64::from(c.u32(&key)?);
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(format!(
                    "general.alignment {alignment} is not a power of two"
                ));
            }
        } else {
            c.skip_value(ty, &key)?;
        }
    }
    let mut tensors = Vec::new();
    for _ in 0..tensor_count {
        let name = c.string("tensor name")?;
        let n_dims = c.u32(&name)?;
        if n_dims == 0 || n_dims > 4 {
            return Err(format!("tensor {name} has {n_dims} dimensions"));
        }
        let mut elems: u64 = 1;
        let mut first_dim = 0;
        for i in 0..n_dims {
            let d = c.count(&name)?;
            if i == 0 {
                first_dim = d;
            }
            elems = elems
                .checked_mul(d)
                .ok_or_else(|| format!("tensor {name} has an impossible shape"))?;
        }
        let ty = c.u32(&name)?;
        let (block, block_bytes) = ggml_block(ty)
            .ok_or_else(|| format!("tensor {name} has an unsupported GGML type {ty}"))?;
        if first_dim % block != 0 {
            return Err(format!(
                "tensor {name}: row of {first_dim} is not a multiple of the block size {block}"
            ));
        }
        let offset = c.u64(&name)?;
        tensors.push((name, offset, elems / block * block_bytes));
    }
    let data_start = c.pos.div_ceil(alignment) * alignment;
    for (name, offset, size) in tensors {
        let end = data_start
            .checked_add(offset)
            .and_then(|x| x.checked_add(size))
            .ok_or_else(|| format!("tensor {name} has an impossible offset"))?;
        if end > len {
            return Err(format!(
                "tensor {name} ends at byte {end} but the file has {len} bytes: the file is truncated (download it again)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut v = MAGIC.to_le_bytes().to_vec();
        v.extend(version.to_le_bytes());
        v.extend(tensors.to_le_bytes());
        v.extend(kvs.to_le_bytes());
        v
    }

    #[test]
    fn rejects_wrong_magic_and_short_files() {
        assert!(check(&b"not a gguf file at all"[..], 22)
            .unwrap_err()
            .contains("magic"));
        assert!(check(&b"GGUF"[..], 4).unwrap_err().contains("not a GGUF"));
    }

    #[test]
    fn rejects_absurd_string_length_without_allocating() {
        let mut f = header(3, 0, 1);
        f.extend(u64::MAX.to_le_bytes()); // key length
        let err = check(&f[..], f.len() as u64).unwrap_err();
        assert!(err.contains("truncated or corrupt"), "{err}");
    }

    #[test]
    fn rejects_tensor_past_end_of_file() {
        let mut f = header(3, 1, 0);
        let name = b"w";
        f.extend((name.len() as u64).to_le_bytes());
        f.extend(name);
        f.extend(1u32.to_le_bytes()); // n_dims
        f.extend(64u64.to_le_bytes()); // dim
        f.extend(0u32.to_le_bytes()); // f32
        f.extend(0u64.to_le_bytes()); // offset
        let err = check(&f[..], f.len() as u64).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        // With the data present (after alignment padding) it passes.
        let padded = f.len().div_ceil(32) * 32;
        f.resize(padded + 256, 0);
        check(&f[..], f.len() as u64).unwrap();
    }
}
