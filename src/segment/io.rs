//! The file-system boundary of segment files, as a small trait so tests can fail the N-th write or
//! sync (ENOSPC, EIO) and prove the store's reaction. Production uses [`StdIo`].

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// Opens and creates segment files. Implementations must be cheap to share between threads.
pub trait SegmentIo: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a new, empty file (failing if it exists) opened for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    /// Makes the directory entry of files created in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open segment file: positional reads and writes, so no shared cursor needs a lock.
pub trait SegmentFile: Send + Sync + std::fmt::Debug {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset`; a short file is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the written bytes reach stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The underlying OS file, when there is one, for memory mapping.
    fn os_file(&self) -> Option<&File>;
}

/// Segment I/O on the real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdIo;

#[derive(Debug)]
struct StdFile(File);

impl SegmentIo for StdIo {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(Arc::new(StdFile(f)))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(StdFile(f)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl SegmentFile for StdFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn os_file(&self) -> Option<&File> {
        Some(&self.0)
    }
}
