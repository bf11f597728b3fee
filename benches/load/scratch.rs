//! Scratch PostgreSQL databases for the benchmarks that run the server on
//! PostgreSQL: each run starts from an empty database and leaves none behind.

use diesel::{Connection, PgConnection, RunQueryDsl};

/// `scheme://authority` of `url`: the database server, whatever database
/// (or parameters) the URL names, since the bench makes its own databases.
pub fn server_of(url: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("--database-url {url} is not postgres://user@host:port"));
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    format!("{scheme}://{authority}")
}

/// A database created fresh on the server and dropped when this goes out
/// of scope, so runs neither see each other's data nor leave any behind.
pub struct ScratchDb {
    server: String,
    name: &'static str,
    /// Its URL, for `--database-url`.
    pub url: String,
}

impl ScratchDb {
    /// Drops `name` on `server` if a run left it, and creates it empty.
    pub fn create(server: &str, name: &'static str) -> Self {
        let mut admin = Self::admin(server);
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            diesel::sql_query(&sql)
                .execute(&mut admin)
                .unwrap_or_else(|e| panic!("{sql} on {server}: {e}"));
        }
        Self {
            server: server.into(),
            name,
            url: format!("{server}/{name}"),
        }
    }

    fn admin(server: &str) -> PgConnection {
        PgConnection::establish(&format!("{server}/postgres"))
            .unwrap_or_else(|e| panic!("PostgreSQL at {server} (database postgres): {e}"))
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = diesel::sql_query(&sql).execute(&mut Self::admin(&self.server)) {
            eprintln!("could not drop scratch database {}: {e}", self.name);
        }
    }
}
