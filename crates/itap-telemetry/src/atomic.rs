//! Atomic, durable file writes: every artifact ITAP writes appears whole or not at
//! all.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Bytes buffered before they reach the temporary file.
const BUFFER: usize = 1 << 18;

/// Temporary files made by this process so far, for unique names.
static SERIAL: AtomicU64 = AtomicU64::new(0);

/// A file written under a temporary name beside its destination and renamed into
/// place by [`commit`](Self::commit), so that a reader never sees it half-written
/// and a crash or an error leaves any earlier file at the path untouched.
///
/// [`create`](Self::create) makes the parent folders and opens a new temporary file
/// in the destination's folder (a hidden name, unique per process and call, never
/// an existing file). Writes go through a buffer. [`commit`](Self::commit) flushes
/// it, `fsync`s the file, renames it over the destination and, on Unix, `fsync`s the
/// folder so that the rename survives a power loss. Dropping an `AtomicFile` that
/// was not committed removes the temporary file.
///
/// The file is created with the default permissions (as [`File::create`] does);
/// a file it replaces does not pass its permissions on.
///
/// ```
/// use std::io::Write;
/// use itap_telemetry::AtomicFile;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out/metrics.json");
/// let mut f = AtomicFile::create(&path)?;
/// f.write_all(b"{}\n").unwrap();
/// assert!(!path.exists(), "nothing at the path before the commit");
/// f.commit()?;
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
#[derive(Debug)]
pub struct AtomicFile {
    /// The destination.
    path: PathBuf,
    /// The temporary file beside it.
    tmp: PathBuf,
    /// The buffered temporary file; `None` once committing has begun.
    out: Option<BufWriter<File>>,
    /// Whether the temporary file has been renamed into place.
    renamed: bool,
}

impl AtomicFile {
    /// Makes `path`'s parent folders and opens a temporary file beside it.
    ///
    /// # Errors
    /// [`Error::Io`] naming the folder when it cannot be made, or `path` when the
    /// temporary file cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<AtomicFile> {
        let path = path.as_ref().to_path_buf();
        let dir = folder_of(&path);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let name = path.file_name().ok_or_else(|| {
            Error::io(
                &path,
                io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            )
        })?;
        let mut attempts = 0;
        loop {
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(
                ".{}.{}.tmp",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            ));
            let tmp = path.with_file_name(tmp_name);
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(file) => {
                    return Ok(AtomicFile {
                        path,
                        tmp,
                        out: Some(BufWriter::with_capacity(BUFFER, file)),
                        renamed: false,
                    });
                }
                // Left behind by a crashed process with the same id: try another.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => {
                    attempts += 1;
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }

    /// The destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and `fsync`s the file, renames it into place and (on Unix) `fsync`s
    /// its folder. On error the temporary file is removed and the path keeps what
    /// it held before (unless the error came after the rename, from syncing the
    /// folder).
    ///
    /// # Errors
    /// [`Error::Io`] naming the destination.
    pub fn commit(mut self) -> Result<()> {
        let Some(out) = self.out.take() else {
            return Err(Error::io(&self.path, already_committed()));
        };
        let file = out
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        self.renamed = true;
        sync_folder(folder_of(&self.path)).map_err(|e| Error::io(&self.path, e))
    }

    /// Flushes and `fsync`s what was written so far, without renaming: a later
    /// [`AtomicFile::commit`] then has little left to sync. Used to finish a large
    /// file's work early and publish it later.
    ///
    /// # Errors
    /// [`Error::Io`] naming the destination.
    pub fn sync(&mut self) -> Result<()> {
        let path = &self.path;
        let out = self.out.as_mut().ok_or_else(already_committed);
        out.and_then(|out| {
            out.flush()?;
            out.get_ref().sync_all()
        })
        .map_err(|e| Error::io(path, e))
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out.as_mut().ok_or_else(already_committed)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.renamed {
            // Close before removing (needed on Windows); the buffered bytes are
            // discarded, not written.
            if let Some(out) = self.out.take() {
                drop(out.into_parts());
            }
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` through an [`AtomicFile`]: the file appears whole or
/// not at all, parent folders are made.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("a/b/report.html");
/// itap_telemetry::write_atomic(&path, b"<html></html>\n")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"<html></html>\n");
/// # Ok::<(), itap_telemetry::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] naming the path (or the folder that cannot be made).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    stage_atomic(path, bytes)?.commit()
}

/// Writes `bytes` as [`write_atomic`] does into a temporary file beside `path`,
/// synced but not yet renamed into place: [`AtomicFile::commit`] publishes it,
/// dropping it leaves `path` as it was.
///
/// # Errors
/// As [`write_atomic`].
pub fn stage_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<AtomicFile> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| Error::io(&f.path, e))?;
    f.sync()?;
    Ok(f)
}

/// The folder a path's file is in (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn already_committed() -> io::Error {
    io::Error::other("the atomic file was already committed")
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_folder(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Folders cannot be opened for syncing here; the rename is as durable as the
/// platform makes it.
#[cfg(not(unix))]
fn sync_folder(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_committed_file_appears_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.csv");
        let mut f = AtomicFile::create(&path).unwrap();
        assert_eq!(f.path(), path);
        let line = b"0123456789abcdef\n";
        // More than the buffer, so some of it reaches the temporary file early.
        for _ in 0..(3 * BUFFER / line.len()) {
            f.write_all(line).unwrap();
        }
        assert!(!path.exists(), "nothing at the path before the commit");
        f.commit().unwrap();
        let text = std::fs::read(&path).unwrap();
        assert_eq!(text.len(), 3 * BUFFER / line.len() * line.len());
        assert!(text.chunks(line.len()).all(|c| c == line));
        assert_eq!(names(dir.path()), ["data.csv"]);
    }

    #[test]
    fn a_commit_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.json");
        std::fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(names(dir.path()), ["model.json"]);
    }

    #[test]
    fn dropping_an_uncommitted_file_removes_it_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.html");
        std::fs::write(&path, "old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(&vec![b'x'; 2 * BUFFER]).unwrap();
        f.flush().unwrap();
        assert_eq!(
            names(dir.path()).len(),
            2,
            "the temporary file is beside it"
        );
        drop(f);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(names(dir.path()), ["report.html"]);

        let fresh = dir.path().join("never.csv");
        drop(AtomicFile::create(&fresh).unwrap());
        assert!(!fresh.exists());
        assert_eq!(names(dir.path()), ["report.html"]);
    }

    #[test]
    fn a_write_into_a_missing_folder_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c/out.json");
        write_atomic(&path, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
        assert_eq!(names(&dir.path().join("a/b/c")), ["out.json"]);
    }

    #[test]
    fn two_files_for_one_path_get_their_own_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let mut a = AtomicFile::create(&path).unwrap();
        let mut b = AtomicFile::create(&path).unwrap();
        a.write_all(b"a").unwrap();
        b.write_all(b"b").unwrap();
        a.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a");
        b.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b");
        assert_eq!(names(dir.path()), ["t.csv"]);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocker"), "a file, not a folder").unwrap();
        let e = write_atomic(dir.path().join("blocker/x.csv"), b"x").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(e.to_string().contains("blocker"), "{e}");
        let e = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }
}
