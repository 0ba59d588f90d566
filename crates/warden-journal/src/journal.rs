//! Appending: the [`Journal`] handle and the writer thread that owns the connection.
//!
//! Callers encode their event on their own thread, hand it to the writer, and await a
//! [`PendingAppend`]. The writer takes everything that is waiting (up to a batch limit) and
//! commits it in one `BEGIN IMMEDIATE` transaction, so many appends share one fsync.
//!
//! With `sync = normal` a commit is a few microseconds of work without an fsync, and handing
//! it to another thread and back costs more than the commit itself. So when the writer is idle
//! (its lock is free) and no other process holds the file's write lock, the caller commits its
//! record itself; under contention it queues like any other append, and group commit takes
//! over.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use warden_core::Event;

use crate::chain::{RecordFields, record_hash};
use crate::checkpoint::{self, Checkpoint};
use crate::error::{CommitError, JournalError};
use crate::store::{self, INSERT_CHECKPOINT, INSERT_RECORD, SyncMode, WriteTx, seq_to_sql};

/// How a journal is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// Durability of each commit. Default [`SyncMode::Full`].
    pub sync: SyncMode,
    /// Most records committed in one transaction. Default 4096; 0 counts as 1.
    pub max_batch: usize,
    /// A signed checkpoint is written whenever the chain crosses a multiple of this many
    /// records, and on close. Default 10,000; 0 means only on close.
    pub checkpoint_every: u64,
    /// A signed checkpoint is also written when records are this old without one, so that
    /// the records a cut could remove unnoticed are at most this recent (with
    /// [`SyncMode::Normal`], a little more: the head then waits for the WAL thread's next
    /// pass, every 200 ms, to sync the records it names). Default 1 s.
    pub checkpoint_interval: Duration,
    /// How long a commit waits for another writer (another Warden process) before failing
    /// with [`crate::CommitFailure::Locked`]. Default 5 s.
    pub busy_timeout: Duration,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            sync: SyncMode::Full,
            max_batch: 4096,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(1),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle for appending to one journal file. Cheap to clone; all clones share one writer
/// thread, which stops once the journal is closed or the last clone is dropped.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    // Some until drop; taking it disconnects the writer.
    commands: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    // Some until drop; taking it stops the WAL checkpointer.
    stop_wal: Option<mpsc::Sender<()>>,
    wal: Option<JoinHandle<()>>,
    closed: AtomicBool,
    /// The connection and chain state, shared by the writer thread and inline commits.
    state: Arc<Mutex<Writer>>,
    /// Records nobody waits for, until a commit takes them along.
    deferred: Arc<Mutex<Deferred>>,
    /// Whether callers may commit their own record when the writer is idle.
    inline: bool,
    /// The seq of the last record this process committed.
    commits: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// An event encoded for the journal, ready to be chained.
struct Encoded {
    time_ms: i64,
    kind: &'static str,
    agent: String,
    session: String,
    body: String,
}

type Reply<T> = oneshot::Sender<Result<T, JournalError>>;

/// Commits closer together than this are load: appends then go to the writer thread, which
/// batches them, rather than each committing on its caller's thread. Apart, an inline commit
/// saves the hand-off to the writer and back. (Zero in unit tests, which commit inline on
/// purpose; both ways write the same records.)
const INLINE_QUIET: Duration = if cfg!(test) {
    Duration::ZERO
} else {
    Duration::from_micros(250)
};

/// How long a record nobody waits for may wait for a commit to take it along before one is
/// made for it alone. Bounds what a crash can lose of such records (the outcome of a call
/// already answered); an append that is waited for ends the wait at once.
const DEFER_AT_MOST: Duration = Duration::from_millis(5);

/// Records appended with [`Journal::append_deferred`], not yet committed.
#[derive(Default)]
struct Deferred {
    records: Vec<Encoded>,
    /// When the oldest of `records` was appended.
    since: Option<Instant>,
    /// Whether the writer thread times deferred records already: while it does, appending
    /// one need not wake it (at a steady rate, one wake per 5 ms instead of one per record).
    watched: bool,
    /// Set by the close's final commit: later records are refused, not left behind.
    closed: bool,
}

fn lock_deferred(deferred: &Mutex<Deferred>) -> MutexGuard<'_, Deferred> {
    deferred.lock().unwrap_or_else(|p| p.into_inner())
}

enum Command {
    Append(Encoded, Reply<u64>),
    Close(Reply<()>),
    /// An inline commit left records without a checkpoint: the writer must time the next one.
    Wake,
    #[cfg(test)]
    Exec(Box<dyn FnOnce(&Connection) + Send>, oneshot::Sender<()>),
}

impl Journal {
    /// Opens the journal at `path`, creating it (and its `.key` file) if needed.
    ///
    /// Fails with [`JournalError::Open`] if the file cannot be created or is not a Warden
    /// journal, and with [`JournalError::Key`] if the key file is unusable.
    pub fn open(path: &Path, options: JournalOptions) -> Result<Journal, JournalError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.is_dir()
        {
            return Err(crate::OpenError::new(
                path,
                format!("directory {} does not exist", parent.display()),
            )
            .into());
        }
        if path.is_dir() {
            return Err(crate::OpenError::new(path, "it is a directory").into());
        }
        // The journal holds what agents did, arguments included: readable by Warden's user
        // only. SQLite gives its -wal and -shm files the same mode as the database.
        // Only an existing SQLite file can be a journal whose key went missing; anything else
        // is reported by the open below as what it is.
        let existing = {
            use std::io::Read;
            let mut magic = [0u8; 16];
            std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut magic))
                .is_ok_and(|()| &magic == b"SQLite format 3\0")
        };
        let key_path = checkpoint::sibling(path, ".key");
        if existing && !key_path.exists() {
            // A new key could not verify the old checkpoints: say what is missing, create
            // nothing.
            return Err(crate::error::KeyError {
                path: key_path,
                detail: "the key file is missing; it signs this journal's checkpoints and \
                         cannot be recreated (restore it from a backup)"
                    .into(),
            }
            .into());
        }
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| crate::OpenError::new(path, format!("cannot create it: {e}")))?;
        }
        let key = checkpoint::load_or_create_key(path)?;
        let conn = store::open_writer(
            path,
            options.sync,
            options.busy_timeout,
            key.verifying_key().as_bytes(),
        )?;
        // A new journal gets a head file naming the genesis before its first record, so that
        // from then on a missing head file can only mean tampering, and a head update that
        // fails later (a full disk) leaves an older head, never none.
        if matches!(checkpoint::read_head(path), Ok(None)) {
            let (last, _) = store::tail(&conn)
                .map_err(|e| crate::OpenError::new(path, format!("cannot read the tail: {e}")))?;
            if last == 0 {
                let genesis = Checkpoint::sign(&key, 0, crate::chain::GENESIS, now_ms());
                checkpoint::write_head(path, &genesis).map_err(|e| {
                    crate::OpenError::new(path, format!("cannot write the head file: {e}"))
                })?;
            }
        }
        // SQLite would copy the WAL back into the database (and fsync it) inside whichever
        // commit crosses its threshold, stalling that append for milliseconds. Another thread
        // does it instead, on its own connection, concurrently with appends.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| crate::OpenError::sqlite(path, e))?;
        // A WAL that once grew longer is cut back to this when it next starts over.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(|e| crate::OpenError::sqlite(path, e))?;
        let (tx, rx) = mpsc::channel();
        let (notify, commits) = tokio::sync::watch::channel(0);
        let deferred = Arc::new(Mutex::new(Deferred::default()));
        // Where SQLite keeps the WAL: beside the file it opened, which is the link's target
        // if `path` is a symbolic link.
        let wal = match conn.path() {
            Some(db) if !db.is_empty() => checkpoint::sibling(Path::new(db), "-wal"),
            _ => checkpoint::sibling(path, "-wal"),
        };
        let state = Arc::new(Mutex::new(Writer {
            notify,
            deferred: deferred.clone(),
            conn,
            key,
            path: path.to_owned(),
            wal,
            max_batch: options.max_batch.max(1),
            sync: options.sync,
            checkpoint_every: options.checkpoint_every,
            checkpoint_interval: options.checkpoint_interval,
            busy_timeout: options.busy_timeout,
            uncheckpointed_since: None,
            last_commit: None,
            head_error: None,
            unsynced_head: None,
            closed: false,
        }));
        let (stop_wal, wal_stop) = mpsc::channel();
        let wal_conn = store::open_checkpointer(path, options.busy_timeout)?;
        let gate = state.clone();
        let wal = std::thread::Builder::new()
            .name("warden-journal-wal".into())
            .spawn(move || checkpoint_wal(&wal_conn, &wal_stop, &gate))
            .map_err(|e| {
                crate::OpenError::new(path, format!("cannot start the WAL thread: {e}"))
            })?;
        let thread_state = state.clone();
        let handle = std::thread::Builder::new()
            .name("warden-journal-writer".into())
            .spawn(move || run(&thread_state, rx))
            .map_err(|e| {
                crate::OpenError::new(path, format!("cannot start the writer thread: {e}"))
            })?;
        Ok(Journal {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                commands: Some(tx),
                writer: Some(handle),
                stop_wal: Some(stop_wal),
                wal: Some(wal),
                closed: AtomicBool::new(false),
                state,
                deferred,
                inline: options.sync == SyncMode::Normal,
                commits,
            }),
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Changes whenever this process commits records, to the last one's seq: followers
    /// (the live stream, a held call waiting for its answer) wake on it instead of polling
    /// only. Records other processes append are not announced here.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.commits.clone()
    }

    /// Queues `event` for the journal. The returned [`PendingAppend`] resolves to the record's
    /// sequence number once the record is durably committed, or to an error if it was not
    /// written. Dropping it does not cancel the append.
    pub fn append(&self, event: &Event) -> PendingAppend {
        let encoded = match encode(event) {
            Ok(e) => e,
            Err(e) => return PendingAppend::failed(e),
        };
        let encoded = match self.try_inline(encoded) {
            Ok(result) => return PendingAppend::ready(result),
            Err(encoded) => encoded,
        };
        self.queue(encoded)
    }

    /// Like [`Journal::append`], but always hands the record to the writer thread, never
    /// committing it on the caller's thread: for records nobody waits on (an outcome written
    /// after the answer), so that their commit does not delay the caller.
    pub fn append_queued(&self, event: &Event) -> PendingAppend {
        match encode(event) {
            Ok(encoded) => self.queue(encoded),
            Err(e) => PendingAppend::failed(e),
        }
    }

    /// Appends `event` for nobody to wait on (an outcome written after the answer): it is
    /// committed together with the next record someone does wait for, or on its own once it
    /// is `DEFER_AT_MOST` (5 ms) old, so that it rarely costs a commit of its own. A commit that
    /// fails is logged; the error here is only for a journal already closed or an event that
    /// cannot be encoded.
    pub fn append_deferred(&self, event: &Event) -> Result<(), JournalError> {
        let encoded = encode(event)?;
        let unwatched = {
            let mut deferred = lock_deferred(&self.inner.deferred);
            if deferred.closed || self.inner.closed.load(Ordering::SeqCst) {
                return Err(JournalError::Closed);
            }
            deferred.records.push(encoded);
            deferred.since.get_or_insert_with(Instant::now);
            !std::mem::replace(&mut deferred.watched, true)
        };
        if unwatched {
            // The writer times the commit that takes it if no other does.
            self.send(Command::Wake)?;
        }
        Ok(())
    }

    fn queue(&self, encoded: Encoded) -> PendingAppend {
        let (tx, rx) = oneshot::channel();
        match self.send(Command::Append(encoded, tx)) {
            Ok(()) => PendingAppend { state: Ok(rx) },
            Err(e) => PendingAppend::failed(e),
        }
    }

    /// Commits `encoded` on this thread if the writer is idle, no commit ended in the last
    /// [`INLINE_QUIET`], and the file's write lock is free; gives it back otherwise.
    fn try_inline(&self, encoded: Encoded) -> Result<Result<u64, JournalError>, Encoded> {
        if !self.inner.inline || self.inner.closed.load(Ordering::SeqCst) {
            return Err(encoded);
        }
        let Ok(mut writer) = self.inner.state.try_lock() else {
            return Err(encoded);
        };
        if writer.closed {
            return Ok(Err(JournalError::Closed));
        }
        if writer
            .last_commit
            .is_some_and(|at| at.elapsed() < INLINE_QUIET)
        {
            // Records keep coming: the writer thread commits them in batches, at a fraction
            // of the cost of one commit each.
            return Err(encoded);
        }
        let had_uncovered = writer.uncheckpointed_since.is_some();
        match writer.commit_inline(encoded) {
            Ok(result) => {
                writer.checkpoint_if_due();
                if !had_uncovered && writer.uncheckpointed_since.is_some() {
                    drop(writer);
                    // The writer thread times checkpoints; it must learn that one is due.
                    let _ = self.send(Command::Wake);
                }
                Ok(result)
            }
            Err(encoded) => Err(encoded),
        }
    }

    /// Waits for every append queued before it, writes a final signed checkpoint, and stops
    /// the writer. Later appends through any clone fail with [`JournalError::Closed`].
    ///
    /// Also reports a failure to update the `.head` file since the journal was opened.
    pub async fn close(&self) -> Result<(), JournalError> {
        let rx = self.start_close()?;
        rx.await.unwrap_or(Err(JournalError::WriterGone))
    }

    /// [`Journal::close`] for synchronous callers. Must not be called from async code.
    pub fn close_blocking(&self) -> Result<(), JournalError> {
        let rx = self.start_close()?;
        rx.blocking_recv().unwrap_or(Err(JournalError::WriterGone))
    }

    fn start_close(&self) -> Result<oneshot::Receiver<Result<(), JournalError>>, JournalError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Close(tx))?;
        self.inner.closed.store(true, Ordering::SeqCst);
        Ok(rx)
    }

    fn send(&self, command: Command) -> Result<(), JournalError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(JournalError::Closed);
        }
        let commands = self.inner.commands.as_ref().ok_or(JournalError::Closed)?;
        // The writer only hangs up after a close (or a panic).
        commands.send(command).map_err(|_| JournalError::Closed)
    }

    /// Runs `f` on the writer's connection, between batches; the receiver fires once it has
    /// run (tests only: simulating failures). While `f` blocks, appends queue up and are then
    /// committed together in one batch.
    #[cfg(test)]
    pub(crate) fn on_writer(
        &self,
        f: impl FnOnce(&Connection) + Send + 'static,
    ) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Exec(Box::new(f), tx)).unwrap();
        rx
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Hanging up lets the writer drain what is queued, checkpoint, and return.
        drop(self.commands.take());
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        drop(self.stop_wal.take());
        if let Some(handle) = self.wal.take() {
            let _ = handle.join();
        }
    }
}

/// How often the WAL is copied back into the database.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Frames (pages) in the WAL from which the checkpointer makes it start over: 64 MiB of
/// 4 KiB pages. Each start-over holds this process's commits back for a checkpoint's final
/// fsync (about 10 ms measured on a slow disk), so not too often.
const WAL_RESTART_FRAMES: i64 = if cfg!(test) { 256 } else { 16_384 };

/// Bytes a WAL file is cut back to when it starts over.
const WAL_SIZE_LIMIT: i64 = 128 << 20;

/// Copies committed WAL frames into the database until told to stop (or every handle is
/// gone), then once more. `PASSIVE` never waits for, nor blocks, the writer. With
/// `sync = normal`, each pass also moves the newest checkpoint into the head file once its
/// records are synced (`sync_then_write_head`).
///
/// SQLite starts the WAL over at a commit that finds every frame copied. Copying while
/// commits go on seldom ends that way, so left alone the WAL grew by every commit (760 MB
/// after 190,000 records, without end). So once the WAL is long and a pass copied all it
/// found, a second pass runs with this process's commits held back (`gate`): it copies only
/// what arrived during the first, and the next commit starts the WAL over.
fn checkpoint_wal(conn: &Connection, stop: &mpsc::Receiver<()>, gate: &Mutex<Writer>) {
    // A checkpoint that cannot run now (the disk is full, another process checkpoints, a
    // reader still uses old frames) only leaves the WAL longer: the records are committed
    // either way, and it is retried.
    let checkpoint = || {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })
        .ok()
    };
    let pass = || {
        if let Some((frames, copied)) = checkpoint()
            && frames >= WAL_RESTART_FRAMES
            && copied == frames
        {
            let _held = lock(gate);
            checkpoint();
        }
        sync_then_write_head(gate);
    };
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(WAL_CHECKPOINT_EVERY) {
        pass();
    }
    pass();
}

/// With `sync = normal`, moves the newest checkpoint into the head file once its records are
/// on disk. The WAL is synced without holding back commits (a pass has just synced most of
/// it); the head is written with them held, as the writer would have.
fn sync_then_write_head(gate: &Mutex<Writer>) {
    let (wal, cp) = {
        let writer = lock(gate);
        match &writer.unsynced_head {
            Some(cp) => (writer.wal.clone(), cp.clone()),
            None => return,
        }
    };
    // The checkpoint was committed before it was handed over, so this sync covers it.
    match sync_wal(&wal) {
        Ok(()) => lock(gate).write_synced_head(&cp),
        // Retried after the next pass; the head only lags meanwhile.
        Err(e) => lock(gate).head_error = Some(e),
    }
}

fn encode(event: &Event) -> Result<Encoded, JournalError> {
    let body = serde_json::to_value(&event.body)?;
    Ok(Encoded {
        time_ms: event.time_ms,
        kind: event.body.kind(),
        agent: event.agent.as_str().to_owned(),
        session: event.session.as_str().to_owned(),
        body: warden_core::redact::canonical_json(&body),
    })
}

/// An append on its way to disk. Await it, or call [`PendingAppend::wait`] from synchronous
/// code.
#[must_use = "an append is only known to be durable once its PendingAppend resolves"]
pub struct PendingAppend {
    state: Result<oneshot::Receiver<Result<u64, JournalError>>, Option<JournalError>>,
}

impl std::fmt::Debug for PendingAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAppend").finish_non_exhaustive()
    }
}

impl PendingAppend {
    fn failed(e: JournalError) -> Self {
        Self {
            state: Err(Some(e)),
        }
    }

    fn ready(result: Result<u64, JournalError>) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(result);
        Self { state: Ok(rx) }
    }

    /// Blocks until the record is committed (its seq) or refused. Must not be called from
    /// async code (it would block the runtime); await the `PendingAppend` there.
    pub fn wait(self) -> Result<u64, JournalError> {
        match self.state {
            Ok(rx) => rx.blocking_recv().unwrap_or(Err(JournalError::WriterGone)),
            Err(e) => Err(e.unwrap_or(JournalError::WriterGone)),
        }
    }
}

impl Future for PendingAppend {
    type Output = Result<u64, JournalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            Ok(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(JournalError::WriterGone))),
            Err(e) => Poll::Ready(Err(e.take().unwrap_or(JournalError::WriterGone))),
        }
    }
}

// === impl Writer ===

struct Writer {
    /// Announces each commit's last seq ([`Journal::commits`]).
    notify: tokio::sync::watch::Sender<u64>,
    /// Records nobody waits for: every commit takes them along.
    deferred: Arc<Mutex<Deferred>>,
    conn: Connection,
    key: SigningKey,
    path: PathBuf,
    /// The WAL file, synced before the head names records when commits are not.
    wal: PathBuf,
    max_batch: usize,
    sync: SyncMode,
    checkpoint_every: u64,
    checkpoint_interval: Duration,
    busy_timeout: Duration,
    /// When the oldest record not yet covered by a checkpoint was committed.
    uncheckpointed_since: Option<std::time::Instant>,
    /// When the last commit of records ended.
    last_commit: Option<Instant>,
    head_error: Option<std::io::Error>,
    /// With `sync = normal`: the newest checkpoint, committed but perhaps not yet on disk,
    /// which the WAL thread moves into the head file once it has synced the WAL.
    unsynced_head: Option<Checkpoint>,
    /// Set by the final checkpoint of a close: nothing may be appended after it.
    closed: bool,
}

fn lock(state: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: group commits of queued appends, timed checkpoints, close.
fn run(state: &Mutex<Writer>, rx: mpsc::Receiver<Command>) {
    let max_batch = lock(state).max_batch;
    let mut batch: Vec<(Encoded, Reply<u64>)> = Vec::with_capacity(max_batch);
    // When the writer last saw deferred records waiting.
    let mut deferred_seen = Instant::now();
    loop {
        let mut close = None;
        let mut hung_up = false;
        let wait = {
            let writer = lock(state);
            let checkpoint = writer
                .uncheckpointed_since
                .map_or(Duration::from_secs(3600), |since| {
                    writer.checkpoint_interval.saturating_sub(since.elapsed())
                });
            let deferred = {
                let mut deferred = lock_deferred(&writer.deferred);
                match deferred.since {
                    Some(since) => {
                        deferred_seen = Instant::now();
                        DEFER_AT_MOST.saturating_sub(since.elapsed())
                    }
                    // Commits took them along: keep watching for a period after the last
                    // one seen, then let the next record wake the writer.
                    None if deferred.watched && deferred_seen.elapsed() < DEFER_AT_MOST => {
                        DEFER_AT_MOST.saturating_sub(deferred_seen.elapsed())
                    }
                    None => {
                        deferred.watched = false;
                        checkpoint
                    }
                }
            };
            checkpoint.min(deferred)
        };
        match rx.recv_timeout(wait) {
            Ok(command) => lock(state).take(command, &mut batch, &mut close),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let mut writer = lock(state);
                writer.commit_deferred_if_due();
                writer.checkpoint_if_due();
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => hung_up = true,
        }
        while close.is_none() && !hung_up && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(command) => lock(state).take(command, &mut batch, &mut close),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => hung_up = true,
            }
        }
        let mut writer = lock(state);
        if !batch.is_empty() {
            writer.commit(&mut batch);
            writer.checkpoint_if_due();
        }
        if close.is_some() || hung_up {
            writer.commit_last_deferred();
        }
        if let Some(reply) = close {
            let result = writer.closing_checkpoint();
            writer.closed = true;
            let _ = reply.send(result);
            // Whatever was queued after the close is refused, not silently dropped.
            for command in rx.try_iter() {
                writer.refuse(command);
            }
            return;
        }
        if hung_up {
            // Every handle is gone; nobody can be told about a failure here.
            let _ = writer.closing_checkpoint();
            writer.closed = true;
            return;
        }
    }
}

impl Writer {
    fn take(
        &mut self,
        command: Command,
        batch: &mut Vec<(Encoded, Reply<u64>)>,
        close: &mut Option<Reply<()>>,
    ) {
        match command {
            Command::Append(encoded, reply) => batch.push((encoded, reply)),
            Command::Close(reply) => *close = Some(reply),
            Command::Wake => {}
            #[cfg(test)]
            Command::Exec(f, done) => {
                // Keep order: whatever was queued before runs first.
                if !batch.is_empty() {
                    self.commit(batch);
                }
                f(&self.conn);
                let _ = done.send(());
            }
        }
    }

    fn refuse(&self, command: Command) {
        match command {
            Command::Append(_, reply) => {
                let _ = reply.send(Err(JournalError::Closed));
            }
            Command::Close(reply) => {
                let _ = reply.send(Err(JournalError::Closed));
            }
            Command::Wake => {}
            #[cfg(test)]
            Command::Exec(_, done) => drop(done),
        }
    }

    /// Commits one record now, without waiting for another writer: `Err` gives it back
    /// when another process holds the file's write lock (then it is queued instead).
    fn commit_inline(&mut self, encoded: Encoded) -> Result<Result<u64, JournalError>, Encoded> {
        let deferred = self.take_deferred();
        let records: Vec<&Encoded> = deferred.iter().chain([&encoded]).collect();
        // Waiting here would block the caller's thread: try the lock once.
        let _ = self.conn.busy_timeout(Duration::ZERO);
        let result = self.insert_refs(&records);
        let _ = self.conn.busy_timeout(self.busy_timeout);
        match result {
            Ok((first_seq, checkpoint)) => {
                let seq = first_seq + deferred.len() as u64;
                self.committed(seq, checkpoint);
                Ok(Ok(seq))
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                self.give_back_deferred(deferred);
                Err(encoded)
            }
            Err(e) => {
                let err = CommitError::from_sqlite(&e, records.len());
                lost_deferred(deferred.len(), &err);
                Ok(Err(JournalError::Commit(err)))
            }
        }
    }

    /// The deferred records, for a commit to take along.
    fn take_deferred(&self) -> Vec<Encoded> {
        let mut deferred = lock_deferred(&self.deferred);
        deferred.since = None;
        std::mem::take(&mut deferred.records)
    }

    /// Puts back, ahead of any that came since, deferred records a commit could not take.
    fn give_back_deferred(&self, mut records: Vec<Encoded>) {
        if records.is_empty() {
            return;
        }
        let mut deferred = lock_deferred(&self.deferred);
        records.append(&mut deferred.records);
        deferred.records = records;
        deferred.since.get_or_insert_with(Instant::now);
    }

    /// Commits the deferred records on their own once the oldest has waited long enough.
    fn commit_deferred_if_due(&mut self) {
        let due = lock_deferred(&self.deferred)
            .since
            .is_some_and(|since| since.elapsed() >= DEFER_AT_MOST);
        if due {
            self.commit(&mut Vec::new());
        }
    }

    /// Commits the deferred records before the writer stops; any appended later are refused.
    fn commit_last_deferred(&mut self) {
        let last = {
            let mut deferred = lock_deferred(&self.deferred);
            deferred.closed = true;
            deferred.since = None;
            std::mem::take(&mut deferred.records)
        };
        self.commit_with(last, &mut Vec::new());
    }

    /// Notes a commit's checkpoint, or that its records await one, and announces it.
    fn committed(&mut self, last_seq: u64, checkpoint: Option<Checkpoint>) {
        self.last_commit = Some(Instant::now());
        self.notify.send_replace(last_seq);
        match checkpoint {
            Some(cp) => {
                self.update_head(&cp);
                self.uncheckpointed_since = None;
            }
            None => {
                self.uncheckpointed_since
                    .get_or_insert_with(std::time::Instant::now);
            }
        }
    }

    /// Commits the deferred records and `batch` in one transaction and answers every append
    /// in the batch.
    fn commit(&mut self, batch: &mut Vec<(Encoded, Reply<u64>)>) {
        let deferred = self.take_deferred();
        self.commit_with(deferred, batch);
    }

    fn commit_with(&mut self, deferred: Vec<Encoded>, batch: &mut Vec<(Encoded, Reply<u64>)>) {
        let encoded: Vec<&Encoded> = deferred
            .iter()
            .chain(batch.iter().map(|(e, _)| e))
            .collect();
        if encoded.is_empty() {
            return;
        }
        match self.insert_refs(&encoded) {
            Ok((first_seq, checkpoint)) => {
                let last_seq = first_seq + encoded.len() as u64 - 1;
                let batch_first = first_seq + deferred.len() as u64;
                for (i, (_, reply)) in batch.drain(..).enumerate() {
                    let _ = reply.send(Ok(batch_first + i as u64));
                }
                self.committed(last_seq, checkpoint);
            }
            Err(e) => {
                // The transaction was rolled back when it dropped: nothing of this batch is
                // in the file, and the tail is re-read from the file next time.
                let err = CommitError::from_sqlite(&e, encoded.len());
                lost_deferred(deferred.len(), &err);
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(JournalError::Commit(err.clone())));
                }
            }
        }
    }

    fn insert_refs(&mut self, batch: &[&Encoded]) -> rusqlite::Result<(u64, Option<Checkpoint>)> {
        let tx = WriteTx::begin(&self.conn)?;
        // INVARIANT: the tail is read under the write lock, so it is the true tail even when
        // other processes append to the same file.
        let (before, mut hash) = store::tail(&tx)?;
        let mut seq = before;
        {
            let mut insert = tx.prepare_cached(INSERT_RECORD)?;
            for e in batch {
                seq += 1;
                let prev = hash;
                hash = record_hash(
                    &prev,
                    &RecordFields {
                        seq,
                        time_ms: e.time_ms,
                        kind: e.kind.as_bytes(),
                        agent: e.agent.as_bytes(),
                        session: e.session.as_bytes(),
                        body: e.body.as_bytes(),
                    },
                );
                insert.execute(params![
                    seq_to_sql(seq),
                    e.time_ms,
                    e.kind,
                    e.agent,
                    e.session,
                    e.body,
                    &prev[..],
                    &hash[..],
                ])?;
            }
        }
        let every = self.checkpoint_every;
        let checkpoint = if every > 0 && seq / every > before / every {
            let cp = Checkpoint::sign(&self.key, seq, hash, now_ms());
            insert_checkpoint(&tx, &cp)?;
            Some(cp)
        } else {
            None
        };
        tx.commit()?;
        Ok((before + 1, checkpoint))
    }

    /// Checkpoints the tail once its oldest uncovered record is `checkpoint_interval` old.
    /// A failure (a full disk) is retried at the next interval; the head only lags.
    fn checkpoint_if_due(&mut self) {
        let due = self
            .uncheckpointed_since
            .is_some_and(|since| since.elapsed() >= self.checkpoint_interval);
        if due {
            self.uncheckpointed_since = match self.final_checkpoint() {
                Ok(()) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "journal checkpoint failed; retried at the next interval");
                    Some(std::time::Instant::now())
                }
            };
        }
    }

    /// Signs the current tail (if no checkpoint names it yet) and updates the head file.
    fn final_checkpoint(&mut self) -> Result<(), JournalError> {
        let cp = {
            let tx = WriteTx::begin(&self.conn).map_err(|e| CommitError::from_sqlite(&e, 0))?;
            let (seq, hash) = store::tail(&tx).map_err(|e| CommitError::from_sqlite(&e, 0))?;
            if seq == 0 {
                drop(tx);
                return self.take_head_error();
            }
            let existing = existing_checkpoint(&tx, seq)?;
            let cp = match existing {
                Some(cp) => cp,
                None => {
                    let cp = Checkpoint::sign(&self.key, seq, hash, now_ms());
                    insert_checkpoint(&tx, &cp).map_err(|e| CommitError::from_sqlite(&e, 0))?;
                    cp
                }
            };
            tx.commit().map_err(|e| CommitError::from_sqlite(&e, 0))?;
            cp
        };
        self.update_head(&cp);
        self.take_head_error()
    }

    /// The checkpoint of a close: the file is about to be left, so the head must name its
    /// tail now, synced first if commits are not.
    fn closing_checkpoint(&mut self) -> Result<(), JournalError> {
        let checkpointed = self.final_checkpoint();
        if let Some(cp) = self.unsynced_head.clone() {
            // On failure it stays, for the WAL thread's last pass to try again.
            match sync_wal(&self.wal) {
                Ok(()) => self.write_synced_head(&cp),
                Err(e) => self.head_error = Some(e),
            }
        }
        checkpointed.and_then(|()| self.take_head_error())
    }

    /// A failure to update the head since the last report, as an error.
    fn take_head_error(&mut self) -> Result<(), JournalError> {
        self.head_error.take().map_or(Ok(()), |source| {
            Err(JournalError::Head {
                path: checkpoint::sibling(&self.path, ".head"),
                source,
            })
        })
    }

    /// Names `cp` in the head file: at once if commits are synced (`sync = full`); with
    /// `sync = normal`, through the WAL thread, which syncs the WAL first. A head written
    /// before its records reach the disk would, after a power loss, name records the file no
    /// longer has, and verification would report a cut-off tail that nobody cut.
    fn update_head(&mut self, cp: &Checkpoint) {
        match self.sync {
            // The records are committed whatever happens here; a failure is reported by the
            // next timed checkpoint (logged) or by the close.
            SyncMode::Full => {
                if let Err(e) = checkpoint::write_head(&self.path, cp) {
                    self.head_error = Some(e);
                }
            }
            SyncMode::Normal => self.unsynced_head = Some(cp.clone()),
        }
    }

    /// Writes the head for `cp`, whose records have just been synced, and forgets it unless
    /// a newer checkpoint came meanwhile.
    fn write_synced_head(&mut self, cp: &Checkpoint) {
        if let Err(e) = checkpoint::write_head(&self.path, cp) {
            self.head_error = Some(e);
            return;
        }
        if self.unsynced_head.as_ref().is_some_and(|u| u.seq <= cp.seq) {
            self.unsynced_head = None;
        }
    }
}

/// Makes every record committed so far durable. Records older than the WAL's contents were
/// synced by the WAL checkpoint that copied them into the database before the WAL started
/// over, so syncing the WAL is enough. The WAL exists while the writer's connection is open;
/// not finding it means not knowing what to sync, an error.
fn sync_wal(wal: &Path) -> std::io::Result<()> {
    std::fs::File::open(wal)
        .and_then(|file| file.sync_data())
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot sync {} before naming its records: {e}",
                    wal.display()
                ),
            )
        })
}

/// Deferred records have nobody to tell of a failed commit: the log is told instead.
fn lost_deferred(records: usize, err: &CommitError) {
    if records > 0 {
        tracing::error!(records, error = %err, "journal records nobody waited for were not written");
    }
}

fn insert_checkpoint(conn: &Connection, cp: &Checkpoint) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_CHECKPOINT)?.execute(params![
        seq_to_sql(cp.seq),
        &cp.hash[..],
        cp.time_ms,
        &cp.signature[..],
    ])?;
    Ok(())
}

fn existing_checkpoint(conn: &Connection, seq: u64) -> Result<Option<Checkpoint>, JournalError> {
    let row: Option<(Vec<u8>, i64, Vec<u8>)> = conn
        .query_row(
            "SELECT hash, time_ms, signature FROM checkpoints WHERE seq = ?1",
            params![seq_to_sql(seq)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((hash, time_ms, signature)) = row else {
        return Ok(None);
    };
    let malformed = || JournalError::Malformed {
        seq,
        detail: "checkpoint hash or signature has the wrong length".into(),
    };
    Ok(Some(Checkpoint {
        seq,
        hash: hash.try_into().map_err(|_| malformed())?,
        time_ms,
        signature: signature.try_into().map_err(|_| malformed())?,
    }))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::testing::{decision, fast_options, journal_with};
    use crate::{CommitFailure, JournalReader, Query, verify};

    fn assert_intact(path: &Path, records: u64) {
        let report = verify(path).unwrap();
        assert_eq!(report.breach, None);
        assert_eq!(report.records_checked, records);
        assert_eq!(report.last_seq, records);
    }

    /// Blocks the writer until the returned sender is dropped or signalled, after running
    /// `f`. Appends made meanwhile form one batch.
    fn hold_writer(
        journal: &Journal,
        f: impl FnOnce(&Connection) + Send + 'static,
    ) -> (std_mpsc::Sender<()>, oneshot::Receiver<()>) {
        let (release, gate) = std_mpsc::channel::<()>();
        let (holding, held) = std_mpsc::channel::<()>();
        let done = journal.on_writer(move |conn| {
            f(conn);
            let _ = holding.send(());
            let _ = gate.recv();
        });
        // Only once the writer holds its lock do appends queue behind it (rather than
        // commit inline).
        held.recv().unwrap();
        (release, done)
    }

    #[test]
    fn a_record_committed_by_its_caller_is_still_checkpointed_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let options = JournalOptions {
            checkpoint_interval: Duration::from_millis(20),
            ..fast_options()
        };
        let journal = Journal::open(&path, options).unwrap();
        assert_eq!(journal.append(&decision("a", 1)).wait().unwrap(), 1);
        // The writer thread was asleep; the inline commit must have told it a checkpoint is
        // due, or the head would keep naming the genesis.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if checkpoint::read_head(&path)
                .unwrap()
                .is_some_and(|cp| cp.seq == 1)
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint covered record 1"
            );
            std::thread::yield_now();
        }
        journal.close_blocking().unwrap();
        assert!(matches!(
            journal.append(&decision("a", 2)).wait(),
            Err(JournalError::Closed)
        ));
        assert_intact(&path, 1);
    }

    #[test]
    fn another_process_holding_the_write_lock_makes_an_append_queue_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = journal_with(&path, 1, fast_options());
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        // The inline attempt finds the file locked and hands the record to the writer thread,
        // which waits (busy_timeout) for the lock; the caller is not held up meanwhile.
        let pending = journal.append(&decision("a", 2));
        other.execute_batch("COMMIT").unwrap();
        assert_eq!(pending.wait().unwrap(), 2);
        journal.close_blocking().unwrap();
        assert_intact(&path, 2);
    }

    #[test]
    fn the_wal_is_copied_back_into_the_database_off_the_commit_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = journal_with(&path, 2000, fast_options());
        // Commits never checkpoint (wal_autocheckpoint = 0), so without the checkpointer
        // thread every record would stay in the WAL and the database a few pages long.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&path).unwrap().len() < 400_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was never copied back"
            );
            std::thread::yield_now();
        }
        drop(journal);
        assert_intact(&path, 2000);
    }

    /// The WAL header's checkpoint sequence number: SQLite counts each start-over of the WAL.
    fn wal_restarts(path: &Path) -> Option<u32> {
        use std::io::Read;
        let mut header = [0u8; 16];
        let mut wal = std::fs::File::open(checkpoint::sibling(path, "-wal")).ok()?;
        wal.read_exact(&mut header).ok()?;
        Some(u32::from_be_bytes([
            header[12], header[13], header[14], header[15],
        ]))
    }

    #[test]
    fn a_long_wal_starts_over_while_commits_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        // Durable commits, one after another without a pause: the checkpointer never finds
        // the WAL idle, as under steady load.
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        journal.append(&decision("alice", 0)).wait().unwrap();
        let first = wal_restarts(&path);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut appended = 1;
        while wal_restarts(&path) == first {
            assert!(
                std::time::Instant::now() < deadline && appended < 10_000,
                "the WAL never started over in {appended} commits ({} bytes)",
                std::fs::metadata(checkpoint::sibling(&path, "-wal")).map_or(0, |m| m.len())
            );
            journal.append(&decision("alice", appended)).wait().unwrap();
            appended += 1;
        }
        journal.close_blocking().unwrap();
        assert_intact(&path, appended);
    }

    /// The records of `path`, as (seq, time_ms), in order.
    fn seqs_and_times(path: &Path) -> Vec<(u64, i64)> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT seq, time_ms FROM records ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn deferred_records_go_first_into_the_next_waited_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        // The writer is held, so nothing can commit the deferred records on its own.
        let (release, done) = hold_writer(&journal, |_| {});
        for i in 1..=3 {
            journal.append_deferred(&decision("a", i)).unwrap();
        }
        let waited = journal.append(&decision("a", 4));
        release.send(()).unwrap();
        done.blocking_recv().unwrap();
        // Its seq counts the deferred records committed ahead of it in the same commit.
        assert_eq!(waited.wait().unwrap(), 4);
        journal.close_blocking().unwrap();
        let times: Vec<i64> = seqs_and_times(&path).into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            times,
            (1..=4)
                .map(|i| decision("a", i).time_ms)
                .collect::<Vec<_>>()
        );
        assert_intact(&path, 4);
    }

    #[test]
    fn an_inline_commit_takes_the_deferred_records_along() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, fast_options()).unwrap();
        journal.append_deferred(&decision("a", 1)).unwrap();
        journal.append_deferred(&decision("a", 2)).unwrap();
        // Committed on this thread (the writer is idle), after the two deferred records —
        // whether they were still waiting or the writer had just committed them.
        assert_eq!(journal.append(&decision("a", 3)).wait().unwrap(), 3);
        journal.close_blocking().unwrap();
        assert_intact(&path, 3);
    }

    #[test]
    fn a_deferred_record_alone_is_committed_without_waiting_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        let mut commits = journal.commits();
        journal.append_deferred(&decision("a", 1)).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), commits.wait_for(|&seq| seq == 1))
                .await
                .expect("the deferred record was never committed")
                .unwrap();
        });
        assert_eq!(seqs_and_times(&path).len(), 1);
        journal.close_blocking().unwrap();
        assert_intact(&path, 1);
    }

    #[test]
    fn closing_commits_deferred_records_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        let (release, done) = hold_writer(&journal, |_| {});
        journal.append_deferred(&decision("a", 1)).unwrap();
        let close = journal.start_close().unwrap();
        assert!(matches!(
            journal.append_deferred(&decision("a", 2)),
            Err(JournalError::Closed)
        ));
        release.send(()).unwrap();
        done.blocking_recv().unwrap();
        close.blocking_recv().unwrap().unwrap();
        assert_intact(&path, 1);
    }

    #[test]
    fn queued_and_inline_appends_share_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, fast_options()).unwrap();
        let mut seqs = Vec::new();
        for i in 0..50 {
            let pending = if i % 2 == 0 {
                journal.append(&decision("a", i))
            } else {
                journal.append_queued(&decision("a", i))
            };
            seqs.push(pending.wait().unwrap());
        }
        assert_eq!(seqs, (1..=50).collect::<Vec<u64>>());
        journal.close_blocking().unwrap();
        assert_intact(&path, 50);
    }

    #[test]
    fn appends_in_flight_get_consecutive_seqs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        let pending: Vec<_> = (0..500)
            .map(|i| journal.append(&decision("alice", i)))
            .collect();
        let seqs: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
        assert_eq!(seqs, (1..=500).collect::<Vec<_>>());
        journal.close_blocking().unwrap();
        assert_intact(&path, 500);
    }

    #[test]
    fn append_is_awaitable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, fast_options()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(journal.append(&decision("a", 1)).await.unwrap(), 1);
            assert_eq!(journal.append(&decision("a", 2)).await.unwrap(), 2);
            journal.close().await.unwrap();
            assert!(matches!(
                journal.append(&decision("a", 3)).await,
                Err(JournalError::Closed)
            ));
        });
        assert_intact(&path, 2);
    }

    #[test]
    fn two_journals_on_one_file_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let options = JournalOptions {
            checkpoint_every: 100,
            ..fast_options()
        };
        let a = Journal::open(&path, options.clone()).unwrap();
        let b = Journal::open(&path, options).unwrap();
        let run = |journal: Journal, agent: &'static str| {
            std::thread::spawn(move || {
                // Several in flight at once, so batches of both writers interleave.
                let mut seqs = Vec::new();
                for round in 0..50 {
                    let pending: Vec<_> = (0..8)
                        .map(|i| journal.append(&decision(agent, round * 8 + i)))
                        .collect();
                    seqs.extend(pending.into_iter().map(|p| p.wait().unwrap()));
                }
                journal.close_blocking().unwrap();
                seqs
            })
        };
        let ta = run(a, "alice");
        let tb = run(b, "bob");
        let mut all: BTreeSet<u64> = ta.join().unwrap().into_iter().collect();
        let from_b = tb.join().unwrap();
        for s in &from_b {
            assert!(all.insert(*s), "seq {s} given to both writers");
        }
        assert_eq!(all, (1..=800).collect());
        assert_intact(&path, 800);
        let reader = JournalReader::open(&path).unwrap();
        let bobs = reader
            .records(&Query {
                agent: Some(warden_core::AgentId::new("bob").unwrap()),
                limit: 10_000,
                ..Query::default()
            })
            .unwrap();
        let bob_seqs: BTreeSet<u64> = bobs.iter().map(|r| r.seq).collect();
        assert_eq!(bob_seqs, from_b.into_iter().collect());
    }

    #[test]
    fn full_disk_fails_every_append_of_the_batch_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = journal_with(&path, 3, fast_options());
        // Cap the file at its current size, so the next batch needs a page it cannot have.
        let (release, done) = hold_writer(&journal, |conn| {
            let pages: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            conn.pragma_update(None, "max_page_count", pages).unwrap();
        });
        let pending: Vec<_> = (0..200)
            .map(|i| journal.append(&decision("alice", 100 + i)))
            .collect();
        release.send(()).unwrap();
        done.blocking_recv().unwrap();
        for p in pending {
            match p.wait() {
                Err(JournalError::Commit(e)) => {
                    assert_eq!(e.failure, CommitFailure::DiskFull, "{e}");
                    assert_eq!(e.records, 200);
                }
                other => panic!("expected a disk-full commit error, got {other:?}"),
            }
        }
        // Space comes back: the writer kept running and the chain did not advance.
        journal
            .on_writer(|conn| {
                conn.pragma_update(None, "max_page_count", 1_000_000_000i64)
                    .unwrap();
            })
            .blocking_recv()
            .unwrap();
        assert_eq!(journal.append(&decision("alice", 4)).wait().unwrap(), 4);
        journal.close_blocking().unwrap();
        assert_intact(&path, 4);
    }

    #[test]
    fn read_only_connection_fails_the_batch_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = journal_with(&path, 2, fast_options());
        let (release, done) = hold_writer(&journal, |conn| {
            conn.pragma_update(None, "query_only", true).unwrap();
        });
        let pending: Vec<_> = (0..5).map(|i| journal.append(&decision("a", i))).collect();
        release.send(()).unwrap();
        done.blocking_recv().unwrap();
        for p in pending {
            match p.wait() {
                Err(JournalError::Commit(e)) => {
                    assert_eq!(e.failure, CommitFailure::ReadOnly, "{e}");
                    assert_eq!(e.records, 5);
                }
                other => panic!("expected a read-only commit error, got {other:?}"),
            }
        }
        journal
            .on_writer(|conn| conn.pragma_update(None, "query_only", false).unwrap())
            .blocking_recv()
            .unwrap();
        assert_eq!(journal.append(&decision("a", 9)).wait().unwrap(), 3);
        journal.close_blocking().unwrap();
        assert_intact(&path, 3);
    }

    #[test]
    fn locked_file_fails_after_busy_timeout_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let options = JournalOptions {
            busy_timeout: Duration::from_millis(20),
            ..fast_options()
        };
        let journal = journal_with(&path, 2, options);
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        match journal.append(&decision("a", 3)).wait() {
            Err(JournalError::Commit(e)) => {
                assert_eq!(e.failure, CommitFailure::Locked, "{e}");
                assert_eq!(e.records, 1);
            }
            other => panic!("expected a locked commit error, got {other:?}"),
        }
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(journal.append(&decision("a", 4)).wait().unwrap(), 3);
        journal.close_blocking().unwrap();
        assert_intact(&path, 3);
    }

    #[test]
    fn real_full_filesystem_when_mount_is_permitted() {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("small");
        std::fs::create_dir(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: mounting a small tmpfs is not permitted here");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _unmount = Unmount(mnt.clone());
        let path = mnt.join("j.db");
        let journal = Journal::open(&path, JournalOptions::default()).unwrap();
        let mut committed = 0;
        let mut failures = 0;
        // The writer may split one round into several batches; each batch commits or fails
        // as a whole, so successes and failures are counted one by one.
        for round in 0..10_000u64 {
            let pending: Vec<_> = (0..50)
                .map(|i| journal.append(&decision("alice", round * 50 + i)))
                .collect();
            for result in pending.into_iter().map(PendingAppend::wait) {
                match result {
                    Ok(seq) => {
                        committed += 1;
                        assert_eq!(seq, committed, "a failed record advanced the chain");
                    }
                    Err(JournalError::Commit(e)) => {
                        assert_eq!(e.failure, CommitFailure::DiskFull, "{e}");
                        failures += 1;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            if failures > 0 {
                break;
            }
        }
        assert!(failures > 0, "a 512 KiB filesystem never filled up");
        drop(journal);
        let report = verify(&path).unwrap();
        assert_eq!(report.records_checked, committed);
    }

    #[test]
    fn checkpoints_every_n_records_and_on_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(
            &path,
            JournalOptions {
                checkpoint_every: 10,
                ..fast_options()
            },
        )
        .unwrap();
        for i in 1..=25 {
            assert_eq!(journal.append(&decision("a", i)).wait().unwrap(), i);
        }
        journal.close_blocking().unwrap();
        let report = verify(&path).unwrap();
        assert_eq!(report.breach, None);
        assert_eq!(report.checkpoints_checked, 3); // 10, 20, and 25 on close
        assert_eq!(report.head_seq, Some(25));
    }

    #[test]
    fn dropping_every_handle_drains_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let journal = Journal::open(&path, fast_options()).unwrap();
        let clone = journal.clone();
        let pending: Vec<_> = (1..=20).map(|i| clone.append(&decision("a", i))).collect();
        drop(journal);
        drop(clone); // joins the writer thread
        let seqs: Vec<u64> = pending.into_iter().map(|p| p.wait().unwrap()).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        let report = verify(&path).unwrap();
        assert_eq!(report.breach, None);
        assert_eq!(report.head_seq, Some(20));
    }

    #[test]
    fn reopening_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        journal_with(&path, 3, fast_options())
            .close_blocking()
            .unwrap();
        let journal = Journal::open(&path, fast_options()).unwrap();
        assert_eq!(journal.append(&decision("a", 4)).wait().unwrap(), 4);
        journal.close_blocking().unwrap();
        assert_intact(&path, 4);
    }

    #[test]
    fn opening_what_cannot_be_a_journal_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing_dir = dir.path().join("nope").join("j.db");
        let err = Journal::open(&missing_dir, fast_options()).unwrap_err();
        assert!(matches!(err, JournalError::Open(_)), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");

        let err = Journal::open(dir.path(), fast_options()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");

        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x42u8; 8192]).unwrap();
        let err = Journal::open(&garbage, fast_options()).unwrap_err();
        assert!(matches!(err, JournalError::Open(_)), "{err}");
        assert!(err.to_string().contains("not a database"), "{err}");

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(crate::JournalReader::open(&other).is_err());
        assert!(verify(&dir.path().join("absent.db")).is_err());
    }

    #[test]
    fn refuses_a_key_file_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        journal_with(&path, 1, fast_options())
            .close_blocking()
            .unwrap();
        let key = checkpoint::sibling(&path, ".key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Journal::open(&path, fast_options()).unwrap_err();
        assert!(matches!(err, JournalError::Key(_)), "{err}");
    }

    #[test]
    fn refuses_a_key_that_did_not_sign_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        journal_with(&path, 1, fast_options())
            .close_blocking()
            .unwrap();
        // Another journal's key, put in place of this one's.
        let other = dir.path().join("other.db");
        journal_with(&other, 1, fast_options())
            .close_blocking()
            .unwrap();
        std::fs::copy(
            checkpoint::sibling(&other, ".key"),
            checkpoint::sibling(&path, ".key"),
        )
        .unwrap();
        let err = Journal::open(&path, fast_options()).unwrap_err();
        assert!(err.to_string().contains("another key"), "{err}");
    }
}
