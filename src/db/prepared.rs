//! Raw statements that PostgreSQL parses and plans once per connection.
//!
//! diesel never caches a raw `sql_query` as a prepared statement: its text
//! could be built from the values. The write path's raw statements (a
//! command's audit events and envelopes, a request's refs) are fixed text
//! with bound values, yet without the cache PostgreSQL parsed and planned
//! them on every command, which on the cores it shares with proctor is
//! time a write waits for. A [`Prepared`] statement is fixed text with a
//! `?` where each value goes, and diesel caches it by that text: prepared
//! on a connection's first use, then only bound and executed.

use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{HasSqlType, Untyped};
use diesel::{IntoSql, QueryResult, RunQueryDsl};

/// One fixed statement with its values. The text is `'static`, so it
/// cannot be built from the values, which is what makes caching it by its
/// text correct.
pub struct Prepared<'a> {
    sql: &'static str,
    binds: Vec<Box<dyn QueryFragment<Pg> + 'a>>,
}

impl<'a> Prepared<'a> {
    /// `sql` with a `?` for each value, bound in order with [`Self::bind`].
    pub fn new(sql: &'static str) -> Self {
        Self {
            sql,
            binds: Vec::new(),
        }
    }

    /// Binds the next `?` to `value` as SQL type `T`.
    pub fn bind<T, U>(mut self, value: U) -> Self
    where
        Pg: HasSqlType<T>,
        T: diesel::sql_types::SqlType + diesel::expression::TypedExpressionType + 'a,
        U: AsExpression<T> + 'a,
        U::Expression: QueryFragment<Pg> + 'a,
    {
        self.binds.push(Box::new(value.into_sql::<T>()));
        self
    }
}

impl QueryFragment<Pg> for Prepared<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut parts = self.sql.split('?');
        if let Some(first) = parts.next() {
            out.push_sql(first);
        }
        let mut placeholders = 0;
        for (i, part) in parts.enumerate() {
            let bind = self.binds.get(i).ok_or_else(|| {
                diesel::result::Error::QueryBuilderError(format!("no value for placeholder {}", i + 1).into())
            })?;
            bind.walk_ast(out.reborrow())?;
            out.push_sql(part);
            placeholders = i + 1;
        }
        // A value left over was meant for a placeholder the text lacks:
        // every value after the missing one would sit one place off.
        if placeholders != self.binds.len() {
            return Err(diesel::result::Error::QueryBuilderError(
                format!("{} values for {placeholders} placeholders", self.binds.len()).into(),
            ));
        }
        Ok(())
    }
}

impl QueryId for Prepared<'_> {
    type QueryId = ();
    // Keyed by its text, not by its type: one type serves many statements.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Prepared<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Prepared<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::sql_types::{Array, BigInt, Text};

    #[test]
    fn each_placeholder_takes_the_next_value_and_the_statement_may_be_cached() {
        let refs = vec!["a".to_owned(), "b".to_owned()];
        let q = Prepared::new("SELECT ?::bigint, u FROM unnest(?::text[]) AS u")
            .bind::<BigInt, _>(7_i64)
            .bind::<Array<Text>, _>(&refs);
        let shown = diesel::debug_query::<Pg, _>(&q).to_string();
        assert!(
            shown.starts_with("SELECT $1::bigint, u FROM unnest($2::text[]) AS u"),
            "{shown}"
        );
        assert!(shown.contains("[7, [\"a\", \"b\"]]"), "{shown}");
        // Through a reference too, as diesel's execute passes it.
        assert!(QueryFragment::<Pg>::is_safe_to_cache_prepared(&&q, &Pg).unwrap());
    }

    #[test]
    fn a_placeholder_without_a_value_is_an_error_not_a_statement() {
        let q = Prepared::new("SELECT ?, ?").bind::<BigInt, _>(1_i64);
        let mut sql = <Pg as diesel::backend::Backend>::QueryBuilder::default();
        assert!(q.to_sql(&mut sql, &Pg).is_err());
    }

    #[test]
    fn a_value_without_a_placeholder_is_an_error_not_a_statement() {
        let q = Prepared::new("SELECT ?")
            .bind::<BigInt, _>(1_i64)
            .bind::<BigInt, _>(2_i64);
        let mut sql = <Pg as diesel::backend::Backend>::QueryBuilder::default();
        assert!(q.to_sql(&mut sql, &Pg).is_err());
    }
}
