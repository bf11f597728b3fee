//! Statements per database round: how many round trips a command or read
//! makes, counted by diesel's instrumentation hook on the connection that
//! runs it. A command runs on one blocking thread from checkout to commit,
//! so the count is kept per thread and read once the round ends.

use std::cell::Cell;

use diesel::connection::{Instrumentation, InstrumentationEvent};

thread_local! {
    static STARTED: Cell<u64> = const { Cell::new(0) };
}

/// Counts each statement a connection starts on the current thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountStatements;

impl Instrumentation for CountStatements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if matches!(event, InstrumentationEvent::StartQuery { .. }) {
            STARTED.with(|c| c.set(c.get() + 1));
        }
    }
}

/// Runs `f` and returns what it returned with the statements it started
/// on this thread (transaction control included).
pub fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = STARTED.with(Cell::get);
    let out = f();
    (out, STARTED.with(Cell::get) - before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    #[test]
    fn every_statement_of_a_round_is_counted() {
        let mut c = diesel::SqliteConnection::establish(":memory:").unwrap();
        c.set_instrumentation(CountStatements);
        let ((), n) = counted(|| {
            c.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
            diesel::sql_query("INSERT INTO t VALUES (1)")
                .execute(&mut c)
                .unwrap();
            diesel::sql_query("SELECT x FROM t").execute(&mut c).unwrap();
        });
        assert_eq!(n, 3);
        let ((), none) = counted(|| ());
        assert_eq!(none, 0);
    }
}
