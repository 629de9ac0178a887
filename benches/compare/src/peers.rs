//! The contenders: relstore through its library API, and the stores a team would pick instead
//! (cacache, SQLite, plain files), all behind one small trait so every workload drives them alike.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use relstore::{ChunkingParams, Durability, ReleaseScope, Store, StoreOptions};
use sha1::Digest;

/// Errors of any contender.
pub type BoxErr = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`BoxErr`].
pub type R<T> = std::result::Result<T, BoxErr>;

/// A store that keeps named blobs.
pub trait Peer: Send + Sync {
    /// Stores `data` under `name`; durable on return where the peer is durable at all.
    fn put(&self, name: &str, data: &[u8]) -> R<()>;
    /// Stores `size` bytes streamed from `r` under `name`.
    fn put_stream(&self, name: &str, r: &mut dyn Read, size: u64) -> R<()>;
    /// The bytes stored under `name`.
    fn get(&self, name: &str) -> R<Vec<u8>>;
    /// Makes everything acknowledged so far durable (the end of a batch).
    fn finish(&self) -> R<()> {
        Ok(())
    }
    /// After the timed part: make everything durable so no write-back leaks into the next run.
    fn settle(&self) -> R<()> {
        Ok(())
    }
}

/// Contender names that are stores (the others are limits).
pub const STORES: &[&str] = &[
    "relstore-immediate",
    "relstore-batched",
    "cacache",
    "sqlite",
    "plain-files",
];

/// Whether contender `name` (possibly `base@MIN/AVG/MAX`) is a store rather than a limit.
pub fn is_store(name: &str) -> bool {
    STORES.contains(&name.split('@').next().unwrap_or(name))
}

/// Parses `MIN/AVG/MAX` in KiB (e.g. `1/4/16`) into chunking parameters, checked against
/// FastCDC's limits so a typo fails before any store is created.
pub fn parse_chunking(s: &str) -> R<ChunkingParams> {
    let v: Vec<u32> = s
        .split('/')
        .map(|x| x.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("chunking {s:?}: {e} (want MIN/AVG/MAX in KiB, e.g. 1/4/16)"))?;
    let [min, avg, max] = v[..] else {
        return Err(format!("chunking {s:?}: want MIN/AVG/MAX in KiB, e.g. 1/4/16").into());
    };
    let p = ChunkingParams {
        min: min << 10,
        avg: avg << 10,
        max: max << 10,
    };
    p.validate()?;
    Ok(p)
}

/// `MIN/AVG/MAX` in KiB, the inverse of [`parse_chunking`].
pub fn chunking_label(p: &ChunkingParams) -> String {
    format!("{}/{}/{}", p.min >> 10, p.avg >> 10, p.max >> 10)
}

/// Splits a contender name `base@MIN/AVG/MAX` into its base and chunking parameters (none: the
/// store's default).
pub fn split_variant(name: &str) -> R<(&str, Option<ChunkingParams>)> {
    match name.split_once('@') {
        Some((base, p)) => Ok((base, Some(parse_chunking(p)?))),
        None => Ok((name, None)),
    }
}

/// Opens contender `name` in the fresh directory `dir`. relstore contenders take an optional
/// `@MIN/AVG/MAX` suffix (KiB) for the chunking parameters of the new store.
pub fn open(name: &str, dir: &Path) -> R<Box<dyn Peer>> {
    fs::create_dir_all(dir)?;
    let (base, chunking) = split_variant(name)?;
    if chunking.is_some() && !base.starts_with("relstore") {
        return Err(format!("{name}: only relstore takes chunking parameters").into());
    }
    Ok(match base {
        "relstore-immediate" => Box::new(Rel::open_with(dir, Durability::Immediate, chunking)?),
        "relstore-batched" => Box::new(Rel::open_with(
            dir,
            Durability::Batched {
                interval: Duration::from_millis(200),
            },
            chunking,
        )?),
        "cacache" => Box::new(Cacache {
            dir: dir.to_owned(),
        }),
        "sqlite" => Box::new(Sql::open(dir)?),
        "plain-files" => Box::new(Plain::open(dir)?),
        other => return Err(format!("unknown contender {other}").into()),
    })
}

/// relstore through the library API: one release, one project, files named as given.
pub struct Rel {
    /// The store.
    pub store: Store,
    /// The scope all files go to.
    pub scope: ReleaseScope,
    durability: Durability,
}

impl Rel {
    /// Opens a store at `dir` and creates the release files go to.
    pub fn open(dir: &Path, durability: Durability) -> R<Rel> {
        Rel::open_with(dir, durability, None)
    }

    /// [`Rel::open`] with chunking parameters for a new store (none: relstore's default).
    pub fn open_with(
        dir: &Path,
        durability: Durability,
        chunking: Option<ChunkingParams>,
    ) -> R<Rel> {
        let mut opts = StoreOptions::new(dir)
            .durability(durability)
            .max_upload_bytes(4 << 30);
        if let Some(c) = chunking {
            opts = opts.chunking(c);
        }
        let store = Store::open(opts)?;
        if let Some(c) = chunking {
            if store.chunking() != c {
                return Err(
                    format!("{}: store kept other chunking parameters", dir.display()).into(),
                );
            }
        }
        store.create_release("bench", "1.0.0", &["web"])?;
        Ok(Rel {
            store,
            scope: ReleaseScope::project("bench", "web", "1.0.0"),
            durability,
        })
    }
}

impl Peer for Rel {
    fn put(&self, name: &str, data: &[u8]) -> R<()> {
        let key = self.scope.file(name, None);
        self.store.upload(&key, &[], &mut &data[..], false)?;
        Ok(())
    }
    fn put_stream(&self, name: &str, r: &mut dyn Read, _size: u64) -> R<()> {
        let key = self.scope.file(name, None);
        self.store.upload(&key, &[], r, false)?;
        Ok(())
    }
    fn get(&self, name: &str) -> R<Vec<u8>> {
        let key = self.scope.file(name, None);
        let file = self.store.file(&key)?.ok_or("missing file")?;
        Ok(self.store.open_file(&file)?.read_to_vec()?)
    }
    fn finish(&self) -> R<()> {
        // `Immediate` uploads are durable on return already; `Batched` ones are acknowledged
        // once in the OS, which is the rate this durability promises (synced in `settle`).
        Ok(())
    }
    fn settle(&self) -> R<()> {
        if self.durability != Durability::Immediate {
            self.store.sync()?;
        }
        Ok(())
    }
}

/// cacache's sync API (SHA-256 content addresses; it never fsyncs).
pub struct Cacache {
    dir: PathBuf,
}

impl Peer for Cacache {
    fn put(&self, name: &str, data: &[u8]) -> R<()> {
        cacache::write_sync(&self.dir, name, data)?;
        Ok(())
    }
    fn put_stream(&self, name: &str, r: &mut dyn Read, _size: u64) -> R<()> {
        let mut w = cacache::SyncWriter::create(&self.dir, name)?;
        std::io::copy(r, &mut w)?;
        w.commit()?;
        Ok(())
    }
    fn get(&self, name: &str) -> R<Vec<u8>> {
        Ok(cacache::read_sync(&self.dir, name)?)
    }
}

/// SQLite (bundled), WAL, `synchronous=FULL`: a blob table keyed by SHA-1 and a files table.
pub struct Sql {
    conn: Mutex<rusqlite::Connection>,
}

impl Sql {
    /// Opens (creating) the database in `dir`.
    pub fn open(dir: &Path) -> R<Sql> {
        fs::create_dir_all(dir)?;
        let conn = rusqlite::Connection::open(dir.join("store.sqlite"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, sha1 BLOB UNIQUE, data BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS files(name TEXT PRIMARY KEY, sha1 BLOB NOT NULL, size INTEGER NOT NULL);",
        )?;
        Ok(Sql {
            conn: Mutex::new(conn),
        })
    }

    /// Inserts file rows without blobs in one transaction (for the listing workload).
    pub fn insert_rows(&self, rows: impl Iterator<Item = (String, [u8; 20], u64)>) -> R<()> {
        let mut conn = self.conn.lock().map_err(|_| "poisoned")?;
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare("INSERT INTO files(name, sha1, size) VALUES (?1, ?2, ?3)")?;
            for (name, sha1, size) in rows {
                st.execute(rusqlite::params![name, &sha1[..], size as i64])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// One page of `limit` names after `after`, in name order.
    pub fn page(&self, after: &str, limit: usize) -> R<Vec<(String, Vec<u8>, i64)>> {
        let conn = self.conn.lock().map_err(|_| "poisoned")?;
        let mut st = conn.prepare_cached(
            "SELECT name, sha1, size FROM files WHERE name > ?1 ORDER BY name LIMIT ?2",
        )?;
        let rows = st
            .query_map(rusqlite::params![after, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

impl Peer for Sql {
    fn put(&self, name: &str, data: &[u8]) -> R<()> {
        let sha1: [u8; 20] = sha1::Sha1::digest(data).into();
        let mut conn = self.conn.lock().map_err(|_| "poisoned")?;
        let tx = conn.transaction()?;
        let have: bool = tx
            .prepare_cached("SELECT 1 FROM blobs WHERE sha1 = ?1")?
            .exists([&sha1[..]])?;
        if !have {
            tx.prepare_cached("INSERT INTO blobs(sha1, data) VALUES (?1, ?2)")?
                .execute(rusqlite::params![&sha1[..], data])?;
        }
        tx.prepare_cached("INSERT INTO files(name, sha1, size) VALUES (?1, ?2, ?3)")?
            .execute(rusqlite::params![name, &sha1[..], data.len() as i64])?;
        tx.commit()?;
        Ok(())
    }
    fn put_stream(&self, name: &str, r: &mut dyn Read, size: u64) -> R<()> {
        // The hash is known only at the end: stream into a zeroblob, then key it (or drop it
        // when the content was already there), all in one transaction.
        let mut conn = self.conn.lock().map_err(|_| "poisoned")?;
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO blobs(sha1, data) VALUES (NULL, zeroblob(?1))",
            [size as i64],
        )?;
        let rowid = tx.last_insert_rowid();
        let mut h = sha1::Sha1::new();
        {
            let mut blob =
                tx.blob_open(rusqlite::DatabaseName::Main, "blobs", "data", rowid, false)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                blob.write_all(&buf[..n])?;
            }
        }
        let sha1: [u8; 20] = h.finalize().into();
        let have: bool = tx
            .prepare_cached("SELECT 1 FROM blobs WHERE sha1 = ?1")?
            .exists([&sha1[..]])?;
        if have {
            tx.execute("DELETE FROM blobs WHERE id = ?1", [rowid])?;
        } else {
            tx.execute(
                "UPDATE blobs SET sha1 = ?1 WHERE id = ?2",
                rusqlite::params![&sha1[..], rowid],
            )?;
        }
        tx.execute(
            "INSERT INTO files(name, sha1, size) VALUES (?1, ?2, ?3)",
            rusqlite::params![name, &sha1[..], size as i64],
        )?;
        tx.commit()?;
        Ok(())
    }
    fn get(&self, name: &str) -> R<Vec<u8>> {
        let conn = self.conn.lock().map_err(|_| "poisoned")?;
        let mut st = conn.prepare_cached(
            "SELECT b.data FROM files f JOIN blobs b ON b.sha1 = f.sha1 WHERE f.name = ?1",
        )?;
        Ok(st.query_row([name], |r| r.get(0))?)
    }
}

/// One file per blob named by its SHA-1 (`objects/ab/cdef…`), written to a temporary file,
/// fsynced and renamed, like git's loose objects; names map to hashes through one small ref
/// file per name, written the same way.
pub struct Plain {
    dir: PathBuf,
    seq: AtomicU64,
}

impl Plain {
    /// Prepares the directory layout.
    pub fn open(dir: &Path) -> R<Plain> {
        fs::create_dir_all(dir.join("tmp"))?;
        fs::create_dir_all(dir.join("refs"))?;
        for i in 0..256 {
            fs::create_dir_all(dir.join("objects").join(format!("{i:02x}")))?;
        }
        Ok(Plain {
            dir: dir.to_owned(),
            seq: AtomicU64::new(0),
        })
    }

    fn tmp(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join("tmp").join(format!("t{n}"))
    }

    fn object(&self, hex: &str) -> PathBuf {
        self.dir.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    fn write_ref(&self, name: &str, hex: &str) -> R<()> {
        let tmp = self.tmp();
        let mut f = File::create(&tmp)?;
        f.write_all(hex.as_bytes())?;
        f.sync_data()?;
        let r = relstore_testkit::hex(&sha1::Sha1::digest(name.as_bytes()));
        fs::rename(&tmp, self.dir.join("refs").join(r))?;
        Ok(())
    }
}

impl Peer for Plain {
    fn put(&self, name: &str, data: &[u8]) -> R<()> {
        let hex = relstore_testkit::hex(&sha1::Sha1::digest(data));
        let obj = self.object(&hex);
        if !obj.exists() {
            let tmp = self.tmp();
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_data()?;
            fs::rename(&tmp, &obj)?;
        }
        self.write_ref(name, &hex)
    }
    fn put_stream(&self, name: &str, r: &mut dyn Read, _size: u64) -> R<()> {
        let tmp = self.tmp();
        let mut f = File::create(&tmp)?;
        let mut h = sha1::Sha1::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            f.write_all(&buf[..n])?;
        }
        let hex = relstore_testkit::hex(&h.finalize());
        let obj = self.object(&hex);
        if obj.exists() {
            fs::remove_file(&tmp)?;
        } else {
            f.sync_data()?;
            fs::rename(&tmp, &obj)?;
        }
        self.write_ref(name, &hex)
    }
    fn get(&self, name: &str) -> R<Vec<u8>> {
        let r = relstore_testkit::hex(&sha1::Sha1::digest(name.as_bytes()));
        let hex = fs::read_to_string(self.dir.join("refs").join(r))?;
        Ok(fs::read(self.object(&hex))?)
    }
}
