//! Files encrypted at rest (backups): AES-256-GCM over 1 MiB chunks, each with its own nonce
//! (a random prefix, the chunk's number, and a flag on the last chunk), so files of any size
//! are sealed and opened in constant memory, and a reordered, altered or truncated file is
//! refused rather than opened wrong (the STREAM construction).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key as AesKey, Nonce};
use rand::RngCore;

const MAGIC: &[u8; 10] = b"KINITENC1\n";
const CHUNK: usize = 1 << 20;
const TAG: usize = 16;

/// A 256-bit key, kept in a file as 64 hexadecimal digits.
#[derive(Clone)]
pub struct Key(zeroize::Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    pub fn generate() -> Key {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Key(zeroize::Zeroizing::new(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(*self.0)
    }

    /// Reads a key file; refuses one others can read.
    pub fn read(path: &Path) -> Result<Key, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{}: mode {:o} lets others read the key; `chmod 600 {}`",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            ));
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        );
        let bytes = hex::decode(text.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                format!(
                    "{}: expected 64 hexadecimal digits (`kinit backup keygen FILE` makes one)",
                    path.display()
                )
            })?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(Key(zeroize::Zeroizing::new(key)))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(AesKey::<Aes256Gcm>::from_slice(&*self.0))
    }
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..7].copy_from_slice(prefix);
    nonce[7..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

/// Reads up to `buffer.len()` bytes, fewer only at the end of the input.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Creates (or empties) `path` readable by its owner only: backups hold keys and all of etcd.
/// The mode is set again for a file that existed with another.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Whether `path` is a sealed file.
pub fn is_sealed(path: &Path) -> bool {
    let mut magic = [0u8; 10];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == MAGIC)
}

/// Seals `src` into `dest` (written 0600).
pub fn seal_file(key: &Key, src: &Path, dest: &Path) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let cipher = key.cipher();
    let mut input = BufReader::new(File::open(src).map_err(|e| io(src, e))?);
    let file = create_private(dest).map_err(|e| io(dest, e))?;
    let mut output = BufWriter::new(file);
    let mut prefix = [0u8; 7];
    rand::rng().fill_bytes(&mut prefix);
    output.write_all(MAGIC).map_err(|e| io(dest, e))?;
    output.write_all(&prefix).map_err(|e| io(dest, e))?;
    // One chunk read ahead: the last one is flagged as last.
    let mut current = vec![0u8; CHUNK];
    let mut next = vec![0u8; CHUNK];
    let mut current_len = read_full(&mut input, &mut current).map_err(|e| io(src, e))?;
    let mut counter = 0u32;
    loop {
        let next_len = if current_len == CHUNK {
            read_full(&mut input, &mut next).map_err(|e| io(src, e))?
        } else {
            0
        };
        let last = next_len == 0;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce(&prefix, counter, last)),
                &current[..current_len],
            )
            .map_err(|_| "encryption failed".to_owned())?;
        output.write_all(&sealed).map_err(|e| io(dest, e))?;
        if last {
            break;
        }
        counter = counter
            .checked_add(1)
            .ok_or("file too large to seal (4 PiB)")?;
        std::mem::swap(&mut current, &mut next);
        current_len = next_len;
    }
    output
        .into_inner()
        .map_err(|e| io(dest, e.into_error()))?
        .sync_all()
        .map_err(|e| io(dest, e))
}

/// Opens a sealed `src` into `dest` (written 0600); a wrong key or a damaged, reordered or
/// truncated file is an error and `dest` is removed.
pub fn open_file(key: &Key, src: &Path, dest: &Path) -> Result<(), String> {
    let result = open_into(key, src, dest);
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

fn open_into(key: &Key, src: &Path, dest: &Path) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    let cipher = key.cipher();
    let mut input = BufReader::new(File::open(src).map_err(|e| io(src, e))?);
    let mut header = [0u8; 17];
    input
        .read_exact(&mut header)
        .map_err(|_| format!("{}: not a sealed file (too short)", src.display()))?;
    if &header[..10] != MAGIC {
        return Err(format!("{}: not a sealed file", src.display()));
    }
    let prefix: [u8; 7] = header[10..].try_into().expect("7 bytes");
    let file = create_private(dest).map_err(|e| io(dest, e))?;
    let mut output = BufWriter::new(file);
    let mut current = vec![0u8; CHUNK + TAG];
    let mut next = vec![0u8; CHUNK + TAG];
    let mut current_len = read_full(&mut input, &mut current).map_err(|e| io(src, e))?;
    let mut counter = 0u32;
    loop {
        let next_len = if current_len == CHUNK + TAG {
            read_full(&mut input, &mut next).map_err(|e| io(src, e))?
        } else {
            0
        };
        let last = next_len == 0;
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce(&prefix, counter, last)),
                &current[..current_len],
            )
            .map_err(|_| {
                format!(
                    "{}: does not open with this key, or is damaged or truncated (chunk {counter})",
                    src.display()
                )
            })?;
        output.write_all(&plain).map_err(|e| io(dest, e))?;
        if last {
            break;
        }
        counter = counter.checked_add(1).ok_or("file too large")?;
        std::mem::swap(&mut current, &mut next);
        current_len = next_len;
    }
    output
        .into_inner()
        .map_err(|e| io(dest, e.into_error()))?
        .sync_all()
        .map_err(|e| io(dest, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn round_trips_of_every_shape() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::generate();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let (plain, sealed, opened) = (
                dir.path().join("plain"),
                dir.path().join("sealed"),
                dir.path().join("opened"),
            );
            std::fs::write(&plain, sample(len)).unwrap();
            seal_file(&key, &plain, &sealed).unwrap();
            assert!(is_sealed(&sealed));
            assert!(!is_sealed(&plain) || len == 0);
            open_file(&key, &sealed, &opened).unwrap();
            assert_eq!(std::fs::read(&opened).unwrap(), sample(len), "{len} bytes");
        }
    }

    #[test]
    fn wrong_keys_damage_and_truncation_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::generate();
        let (plain, sealed, opened) = (
            dir.path().join("plain"),
            dir.path().join("sealed"),
            dir.path().join("opened"),
        );
        std::fs::write(&plain, sample(2 * CHUNK + 10)).unwrap();
        seal_file(&key, &plain, &sealed).unwrap();
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(
            !bytes.windows(64).any(|w| w == &sample(64)[..]),
            "not in clear"
        );

        let error = open_file(&Key::generate(), &sealed, &opened).unwrap_err();
        assert!(error.contains("does not open with this key"), "{error}");
        assert!(!opened.exists(), "nothing half-opened is left");

        let mut flipped = bytes.clone();
        flipped[17 + CHUNK + 100] ^= 1;
        std::fs::write(&sealed, &flipped).unwrap();
        assert!(open_file(&key, &sealed, &opened).is_err(), "a flipped byte");

        // Whole chunks cut off the end: the new last chunk was not sealed as last.
        std::fs::write(&sealed, &bytes[..17 + 2 * (CHUNK + TAG)]).unwrap();
        assert!(open_file(&key, &sealed, &opened).is_err(), "truncated");
    }

    #[test]
    fn key_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let key = Key::generate();
        std::fs::write(&path, key.to_hex()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Key::read(&path).unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Key::read(&path).unwrap().to_hex(), key.to_hex());
        std::fs::write(&path, "short").unwrap();
        assert!(Key::read(&path).unwrap_err().contains("64 hexadecimal"));
        assert!(!format!("{key:?}").contains(&key.to_hex()[..8]));
    }
}
