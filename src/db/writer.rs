//! SQLite's one writer: commands queue here for one dedicated connection and
//! commit in groups, instead of each taking a pooled connection and waiting
//! in SQLite's busy handler (whose sleeps gave a p99 of 0.76 s at four
//! writes in flight).
//!
//! The writer thread takes the first queued command, opens one
//! `BEGIN IMMEDIATE` transaction, and runs every command it finds queued
//! while the group is open (at most 64 of them, started within 5 ms:
//! [`GROUP`]), each inside its own savepoint: a command that
//! fails or panics rolls back to its savepoint and its neighbours go on.
//! One `COMMIT` (one fsync with `synchronous = FULL`) then makes the whole
//! group durable, and only then does any caller get its answer: an
//! acknowledged write survives a crash, and if the `COMMIT` fails every
//! command of the group gets that error, because none of them is written.
//!
//! The writer never waits for more commands to arrive: a group is whatever
//! queued while the previous one committed, so one write alone commits at
//! once and grouping only happens under load.
//!
//! The queue is bounded ([`QUEUE_COMMANDS`]): a caller that finds it full
//! waits for room (backpressure) rather than failing, because every RPC
//! already runs under the server's concurrency limits and its own deadline,
//! so a full queue is a short wait and a refusal would only turn it into
//! retries. Reads do not come here: WAL lets pooled connections read beside
//! the writer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::notify::{self, Topic};
use super::{DbConnection, DbManager, DbUrl};
use crate::error::{Error, Result};

/// How large a group may grow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// Most commands one group commits: bounds what one failed `COMMIT`
    /// takes down and how long a group keeps the write lock.
    pub(super) commands: usize,
    /// No command joins a group that has been open longer than this, so a
    /// group of slow commands does not hold the lock (and its first
    /// caller's answer) for long.
    pub(super) window: Duration,
}

/// The bounds the writer thread uses.
pub(super) const GROUP: Bounds = Bounds {
    commands: 64,
    window: Duration::from_millis(5),
};
/// Commands that may wait in the queue before callers wait to enqueue.
const QUEUE_COMMANDS: usize = 1024;
/// The one savepoint a command runs in (savepoints nest inside the group's
/// transaction; one at a time is open).
const SAVEPOINT: &str = "proctor_command";

/// One queued command, with its type erased so commands returning
/// different types share the queue.
pub(super) trait Command: Send {
    /// Runs the command on the writer's connection inside its savepoint,
    /// keeping its value (or error) and the topics it marked until the
    /// group's fate is known. False when the command failed: its savepoint
    /// is then rolled back.
    fn run(&mut self, conn: &mut DbConnection) -> bool;

    /// Records that the command panicked (`why`), so its caller gets an
    /// error instead of an answer that never comes.
    fn panicked(&mut self, why: &str);

    /// Answers the caller once the group committed (`Ok`) or failed to.
    fn answer(self: Box<Self>, group: Result<()>);
}

/// What a caller gets back: the command's value and the topics to wake.
pub(super) type Reply<T> = Result<(T, Vec<Topic>)>;

/// A command returning `T`, and where its caller waits for the answer.
pub(super) struct Typed<T, F> {
    f: Option<F>,
    out: Option<Reply<T>>,
    reply: oneshot::Sender<Reply<T>>,
    /// The caller's span, entered while the command runs so its queries are
    /// traced under the RPC that sent it.
    span: tracing::Span,
}

impl<T, F> Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
{
    /// Wraps `f`; the receiver resolves after the group's `COMMIT`.
    pub(super) fn boxed(f: F, span: tracing::Span) -> (Box<dyn Command>, oneshot::Receiver<Reply<T>>) {
        let (reply, rx) = oneshot::channel();
        let cmd = Box::new(Self {
            f: Some(f),
            out: None,
            reply,
            span,
        });
        (cmd, rx)
    }
}

impl<T, F> Command for Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &mut DbConnection) -> bool {
        let _entered = self.span.enter();
        let Some(f) = self.f.take() else {
            self.out = Some(Err(Error::Unexpected("command ran twice".into())));
            return false;
        };
        let (out, topics) = notify::collect(|| f(conn));
        let ok = out.is_ok();
        self.out = Some(out.map(|v| (v, topics)));
        ok
    }

    fn panicked(&mut self, why: &str) {
        self.out = Some(Err(Error::Unexpected(format!("write command panicked: {why}"))));
    }

    fn answer(self: Box<Self>, group: Result<()>) {
        let out = match (group, self.out) {
            // The command's own error stands whatever became of the group.
            (_, Some(Err(e))) => Err(e),
            (Ok(()), Some(ok)) => ok,
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Error::Unexpected("command never ran".into())),
        };
        // The caller may have gone (its deadline passed): nobody to tell.
        let _ = self.reply.send(out);
    }
}

/// A copy of a group's error for each of its commands (`Error` is not
/// `Clone`; the match is exhaustive so a new variant is copied too).
fn copy(e: &Error) -> Error {
    match e {
        Error::Invalid(v) => Error::Invalid(v.clone()),
        Error::Missing(m) => Error::Missing(m.clone()),
        Error::NotFound { resource_type, name } => Error::NotFound {
            resource_type,
            name: name.clone(),
        },
        Error::Unmet {
            reason,
            message,
            conditions,
        } => Error::Unmet {
            reason,
            message: message.clone(),
            conditions: conditions.clone(),
        },
        Error::Duplicate(m) => Error::Duplicate(m.clone()),
        Error::WrongState(m) => Error::WrongState(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::Forbidden(m) => Error::Forbidden(m.clone()),
        Error::OverLimit { message, retry_after } => Error::OverLimit {
            message: message.clone(),
            retry_after: *retry_after,
        },
        Error::NotReady(m) => Error::NotReady(m.clone()),
        Error::Unexpected(m) => Error::Unexpected(m.clone()),
    }
}

/// Counts of what the writer committed, for tests and gauges.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Groups that reached `COMMIT` successfully.
    pub(super) groups: AtomicU64,
    /// Commands in those groups, failed ones included.
    pub(super) commands: AtomicU64,
}

/// The handle a [`Store`](super::Store) holds: the queue's sending end and
/// the thread, which finishes what is queued and stops when the last
/// handle is dropped.
pub(super) struct Writer {
    tx: Option<mpsc::Sender<Box<dyn Command>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    pub(super) stats: std::sync::Arc<Stats>,
}

impl Writer {
    /// Opens the writer's connection (the pool's settings: WAL,
    /// `synchronous = FULL`, foreign keys, busy timeout) and starts its
    /// thread.
    pub(super) fn start(url: &DbUrl) -> Result<Self> {
        let conn = DbManager::connect_url(url)
            .map_err(|e| Error::NotReady(format!("cannot open the sqlite writer: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUE_COMMANDS);
        let stats = std::sync::Arc::new(Stats::default());
        let url = url.clone();
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                // Group commit is throughput work: a decision thread that
                // wakes runs before it when the cores are full.
                crate::priority::lower_this_thread("sqlite writer");
                run(conn, &url, rx, &thread_stats)
            })
            .map_err(|e| Error::Unexpected(format!("cannot start the sqlite writer: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            thread_id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
            stats,
        })
    }

    /// Queues `cmd`, waiting for room when the queue is full.
    pub(super) async fn send(&self, cmd: Box<dyn Command>) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::NotReady("the database writer has stopped".into()))?;
        tx.send(cmd)
            .await
            .map_err(|_| Error::NotReady("the database writer has stopped".into()))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread drain it and return.
        self.tx = None;
        // A command's closure may hold the last handle and drop it on the
        // writer thread itself, which must not wait for its own end.
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

/// The writer thread: one group after another until the queue closes.
fn run(mut conn: DbConnection, url: &DbUrl, mut rx: mpsc::Receiver<Box<dyn Command>>, stats: &Stats) {
    conn.set_instrumentation(super::statements::CountStatements);
    while let Some(first) = rx.blocking_recv() {
        if !usable(&mut conn) {
            // A group left the connection in a state it cannot leave
            // (an unabortable transaction): start again on a fresh one.
            match DbManager::connect_url(url) {
                Ok(c) => {
                    conn = c;
                    conn.set_instrumentation(super::statements::CountStatements);
                }
                Err(e) => {
                    first.answer(Err(Error::NotReady(format!(
                        "cannot reopen the sqlite writer: {e}"
                    ))));
                    continue;
                }
            }
        }
        let mut next = Some(first);
        commit_group(
            &mut conn,
            GROUP,
            || next.take().or_else(|| rx.try_recv().ok()),
            |n| {
                stats.groups.fetch_add(1, Ordering::Relaxed);
                stats.commands.fetch_add(n as u64, Ordering::Relaxed);
            },
        );
    }
}

/// True when `conn` is outside any transaction and its transaction manager
/// is sound, so a group can begin on it.
fn usable(conn: &mut DbConnection) -> bool {
    let DbConnection::Sqlite(c) = conn else {
        return false;
    };
    matches!(
        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        Ok(None)
    )
}

/// Runs one group on `conn`: `BEGIN IMMEDIATE`, then the commands `next`
/// yields (until it yields none, or `bounds` are reached), each in its own
/// savepoint, then `COMMIT`, then `committed` with the group's size (before
/// any answer, so a caller that got its answer sees its group counted),
/// then every answer. Returns how many commands the committed group held,
/// or None when the group did not commit.
pub(super) fn commit_group(
    conn: &mut DbConnection,
    bounds: Bounds,
    mut next: impl FnMut() -> Option<Box<dyn Command>>,
    committed: impl FnOnce(usize),
) -> Option<usize> {
    let first = next()?;
    let begun = Instant::now();
    let mut group: Vec<Box<dyn Command>> = Vec::with_capacity(bounds.commands);
    group.push(first);
    let outcome = begin(conn).and_then(|()| {
        // Each command runs as it is taken, so commands that queue while
        // the group runs still join it.
        while let Some(cmd) = group.last_mut() {
            run_one(conn, cmd.as_mut())?;
            if group.len() >= bounds.commands || begun.elapsed() >= bounds.window {
                break;
            }
            match next() {
                Some(c) => group.push(c),
                None => break,
            }
        }
        commit(conn)
    });
    if let Err(e) = &outcome {
        // Still inside the transaction (a savepoint could not be undone):
        // abandon all of it.
        if depth(conn).is_ok_and(|d| d > 0)
            && let Ok(c) = sqlite(conn)
            && let Err(rb) = AnsiTransactionManager::rollback_transaction(c)
        {
            tracing::error!(error = %rb, "rollback of a failed sqlite write group failed");
        }
        tracing::error!(error = %e, commands = group.len(), "sqlite write group failed; none of it is written");
    }
    let n = group.len();
    if outcome.is_ok() {
        committed(n);
    }
    for c in group {
        c.answer(outcome.as_ref().map(|_| ()).map_err(copy));
    }
    outcome.is_ok().then_some(n)
}

fn sqlite(conn: &mut DbConnection) -> Result<&mut SqliteConnection> {
    match conn {
        DbConnection::Sqlite(c) => Ok(c),
        DbConnection::Pg(_) => Err(Error::Unexpected(
            "the sqlite writer holds a postgresql connection".into(),
        )),
    }
}

fn depth(conn: &mut DbConnection) -> Result<u32> {
    let c = sqlite(conn)?;
    Ok(AnsiTransactionManager::transaction_manager_status_mut(c)
        .transaction_depth()?
        .map_or(0, std::num::NonZeroU32::get))
}

fn begin(conn: &mut DbConnection) -> Result<()> {
    AnsiTransactionManager::begin_transaction_sql(sqlite(conn)?, "BEGIN IMMEDIATE")?;
    Ok(())
}

fn commit(conn: &mut DbConnection) -> Result<()> {
    // On failure diesel rolls the transaction back (or marks the connection
    // broken, which the next group sees and replaces).
    AnsiTransactionManager::commit_transaction(sqlite(conn)?)?;
    Ok(())
}

/// Runs one command in its savepoint. Err means the group cannot go on
/// (its savepoint could not be opened or undone); a command's own failure
/// or panic is kept on the command and rolled back to the savepoint.
fn run_one(conn: &mut DbConnection, cmd: &mut dyn Command) -> Result<()> {
    sqlite(conn)?.batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))?;
    let ok = match catch_unwind(AssertUnwindSafe(|| cmd.run(conn))) {
        Ok(ok) => ok,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(panic = %why, "a write command panicked; its savepoint is rolled back");
            cmd.panicked(&why);
            false
        }
    };
    // A command that panicked inside a nested transaction of its own
    // leaves it open: undo those levels first.
    while depth(conn)? > 1 {
        AnsiTransactionManager::rollback_transaction(sqlite(conn)?)?;
    }
    if depth(conn)? != 1 {
        return Err(Error::Unexpected(
            "a write command ended the group's transaction".into(),
        ));
    }
    let sql = if ok {
        format!("RELEASE {SAVEPOINT}")
    } else {
        format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}")
    };
    sqlite(conn)?.batch_execute(&sql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use diesel::prelude::*;
    use diesel::sql_types::Text;

    use super::*;
    use crate::clock::SystemClock;
    use crate::db::Store;

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        v: String,
    }

    /// A writer-configured connection on a fresh file with one table whose
    /// values are unique (so a duplicate is a command's own failure).
    fn fresh() -> (tempfile::TempDir, DbUrl, DbConnection) {
        let dir = tempfile::tempdir().unwrap();
        let url = DbUrl::Sqlite(dir.path().join("w.db"));
        let mut conn = DbManager::connect_url(&url).unwrap();
        conn.batch_execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE); \
             CREATE TABLE parent (id INTEGER PRIMARY KEY); \
             CREATE TABLE child (p INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        (dir, url, conn)
    }

    fn insert(conn: &mut DbConnection, v: &str) -> Result<()> {
        diesel::sql_query("INSERT INTO t (v) VALUES (?)")
            .bind::<Text, _>(v)
            .execute(conn)?;
        Ok(())
    }

    /// The rows as a second connection sees them: only what committed.
    fn committed(url: &DbUrl) -> Vec<String> {
        let mut c = DbManager::connect_url(url).unwrap();
        diesel::sql_query("SELECT v FROM t ORDER BY id")
            .load::<Row>(&mut c)
            .unwrap()
            .into_iter()
            .map(|r| r.v)
            .collect()
    }

    type Answer<T> = oneshot::Receiver<Reply<T>>;

    fn command<T, F>(f: F) -> (Box<dyn Command>, Answer<T>)
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        Typed::boxed(f, tracing::Span::none())
    }

    /// Bounds that never close a group by time, so a slow machine (or a
    /// panic printing its backtrace) cannot split what a test groups.
    const UNTIMED: Bounds = Bounds {
        commands: GROUP.commands,
        window: Duration::from_secs(3600),
    };

    /// Runs `cmds` as one group, as the writer thread would find them queued.
    fn group(conn: &mut DbConnection, cmds: Vec<Box<dyn Command>>) -> Option<usize> {
        let mut queued = cmds.into_iter();
        commit_group(conn, UNTIMED, || queued.next(), |_| {})
    }

    fn answer<T>(mut rx: Answer<T>) -> Reply<T> {
        rx.try_recv().expect("answered once the group ended")
    }

    #[test]
    fn a_failing_command_rolls_back_alone_and_its_neighbours_commit() {
        let (_dir, url, mut conn) = fresh();
        let (a, ra) = command(|c| insert(c, "a"));
        let (b, rb) = command(|c| {
            // It writes, then fails: its write must go with it.
            insert(c, "b")?;
            insert(c, "a")
        });
        let (c, rc) = command(|c| insert(c, "c"));
        assert_eq!(group(&mut conn, vec![a, b, c]), Some(3));
        assert!(answer(ra).is_ok());
        assert!(matches!(answer(rb), Err(Error::Duplicate(_))));
        assert!(answer(rc).is_ok());
        assert_eq!(committed(&url), ["a", "c"]);
    }

    #[test]
    fn a_panicking_command_fails_alone_and_the_writer_goes_on() {
        let (_dir, url, mut conn) = fresh();
        let (a, ra) = command(|c| insert(c, "a"));
        let (p, rp) = command(|c| -> Result<()> {
            insert(c, "p")?;
            // Inside a nested transaction of its own, so the writer has to
            // undo that level too.
            c.transaction(|c| -> Result<()> {
                insert(c, "q")?;
                panic!("a bug in a command")
            })
        });
        let (c, rc) = command(|c| insert(c, "c"));
        assert_eq!(group(&mut conn, vec![a, p, c]), Some(3));
        assert!(answer(ra).is_ok());
        match answer(rp) {
            Err(Error::Unexpected(m)) => assert!(m.contains("a bug in a command"), "{m}"),
            other => panic!("expected an internal error, got {:?}", other.map(|_| ())),
        }
        assert!(answer(rc).is_ok());
        assert_eq!(committed(&url), ["a", "c"]);
        // The connection is sound for the next group.
        let (d, rd) = command(|c| insert(c, "d"));
        assert_eq!(group(&mut conn, vec![d]), Some(1));
        assert!(answer(rd).is_ok());
        assert!(usable(&mut conn));
    }

    #[test]
    fn each_caller_gets_its_own_value_in_queue_order_and_groups_are_bounded() {
        let (_dir, url, mut conn) = fresh();
        let n = GROUP.commands + 6;
        let (cmds, answers): (Vec<_>, Vec<_>) = (0..n)
            .map(|i| {
                command(move |c| {
                    insert(c, &format!("{i:03}"))?;
                    notify::changed(Topic::SubjectRequest(format!("r{i}")));
                    Ok(i)
                })
            })
            .unzip();
        let mut queued = cmds.into_iter();
        assert_eq!(
            commit_group(&mut conn, UNTIMED, || queued.next(), |_| {}),
            Some(GROUP.commands)
        );
        assert_eq!(
            commit_group(&mut conn, UNTIMED, || queued.next(), |_| {}),
            Some(6)
        );
        assert!(queued.next().is_none());
        for (i, rx) in answers.into_iter().enumerate() {
            let (v, topics) = answer(rx).unwrap();
            assert_eq!(v, i);
            assert_eq!(topics, [Topic::SubjectRequest(format!("r{i}"))]);
        }
        let want: Vec<String> = (0..n).map(|i| format!("{i:03}")).collect();
        assert_eq!(committed(&url), want);
    }

    #[test]
    fn a_failed_commit_fails_every_command_of_the_group() {
        let (_dir, url, mut conn) = fresh();
        let (a, ra) = command(|c| insert(c, "a"));
        // A deferred foreign key is only checked at COMMIT, so this command
        // succeeds on its own and makes the group's COMMIT fail.
        let (b, rb) = command(|c| {
            c.batch_execute("INSERT INTO child (p) VALUES (999)")?;
            Ok(())
        });
        assert_eq!(group(&mut conn, vec![a, b]), None);
        assert!(answer(ra).is_err());
        assert!(answer(rb).is_err());
        assert!(committed(&url).is_empty());
        assert!(usable(&mut conn));
        let (c, rc) = command(|c| insert(c, "c"));
        assert_eq!(group(&mut conn, vec![c]), Some(1));
        assert!(answer(rc).is_ok());
        assert_eq!(committed(&url), ["c"]);
    }

    #[test]
    fn dropping_the_writer_commits_what_is_queued_first() {
        let (_dir, url, _conn) = fresh();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let writer = Writer::start(&url).unwrap();
        let answers: Vec<_> = (0..20)
            .map(|i| {
                let (cmd, rx) = command(move |c| insert(c, &format!("{i:02}")));
                rt.block_on(writer.send(cmd)).unwrap();
                rx
            })
            .collect();
        drop(writer);
        for rx in answers {
            assert!(answer(rx).is_ok());
        }
        assert_eq!(committed(&url).len(), 20);
    }

    fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        Store::connect(&url, &crate::db::StoreOptions::default(), Arc::new(SystemClock)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_wake_only_for_what_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        store
            .write("test.schema", |c, _| {
                c.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)")?;
                Ok(())
            })
            .await
            .unwrap();
        let ok = Topic::SubjectRequest("kept".into());
        let lost = Topic::SubjectRequest("rolled-back".into());
        let _kept = store.follow(ok.clone());
        let _gone = store.follow(lost.clone());
        let n = 200;
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let store = store.clone();
                let (ok, lost) = (ok.clone(), lost.clone());
                tokio::spawn(async move {
                    store
                        .write("test.insert", move |c, _| {
                            if i % 10 == 3 {
                                notify::changed(lost);
                                return Err(Error::WrongState("refused".into()));
                            }
                            notify::changed(ok);
                            insert(c, &format!("{i:03}"))?;
                            Ok(i)
                        })
                        .await
                })
            })
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(v) => assert_eq!(v, i),
                Err(Error::WrongState(_)) => assert_eq!(i % 10, 3),
                Err(e) => panic!("write {i}: {e}"),
            }
        }
        assert_eq!(store.hub().signals(&ok), n as u64 - 20);
        assert_eq!(store.hub().signals(&lost), 0);
        let rows = store
            .read("test.count", |c, _| {
                Ok(diesel::sql_query("SELECT v FROM t").load::<Row>(c)?.len())
            })
            .await
            .unwrap();
        assert_eq!(rows, n - 20);
        let g = store.write_groups().unwrap();
        assert_eq!(g.commands, n as u64 + 1);
        assert!(g.groups < g.commands, "no two commands shared a commit: {g:?}");
        // A panicking command answers with an error, and the writer serves
        // the next one.
        let panicked = store
            .write("test.panic", |_, _| -> Result<()> { panic!("boom") })
            .await;
        assert!(matches!(panicked, Err(Error::Unexpected(_))));
        assert_eq!(store.write("test.after", |_, _| Ok(7)).await.unwrap(), 7);
    }
}
