//! The audit log's Merkle tree in the database (RFC 6962 hashing through
//! the `tlog_tiles` port of Go's `sumdb/tlog`): every complete subtree's hash
//! is stored under its stored-hash index, so a root, an inclusion proof or a
//! consistency proof reads O(log n) rows, and appending a leaf writes on
//! average two. Rows and queries only; the sequencer decides what to append.

use std::cell::RefCell;
use std::collections::HashMap;

use diesel::prelude::*;
use tlog_tiles::{Hash, HashReader, RecordProof, TreeProof};

use crate::db::DbConnection;
use crate::db::schema::audit_tree_hashes::dsl as th;
use crate::error::{Error, Result};

/// Reads stored hashes from the database, and first from `pending` (the
/// hashes a batch computed but has not written yet) and `known` (hashes
/// read or written before: a stored hash never changes once committed).
pub struct DbHashes<'c, 'p> {
    conn: RefCell<&'c mut DbConnection>,
    pending: &'p HashMap<u64, Hash>,
    known: &'p HashMap<u64, Hash>,
}

impl<'c, 'p> DbHashes<'c, 'p> {
    /// A reader over `conn` that sees `pending` as if written.
    pub fn new(conn: &'c mut DbConnection, pending: &'p HashMap<u64, Hash>) -> Self {
        Self::knowing(conn, pending, pending)
    }

    /// A reader over `conn` that sees `pending` as if written and answers
    /// from `known` without reading.
    fn knowing(
        conn: &'c mut DbConnection,
        pending: &'p HashMap<u64, Hash>,
        known: &'p HashMap<u64, Hash>,
    ) -> Self {
        Self {
            conn: RefCell::new(conn),
            pending,
            known,
        }
    }

    fn remembered(&self, i: &u64) -> Option<&Hash> {
        self.pending.get(i).or_else(|| self.known.get(i))
    }
}

fn to_hash(raw: &[u8]) -> std::result::Result<Hash, tlog_tiles::Error> {
    <[u8; 32]>::try_from(raw)
        .map(Hash)
        .map_err(|_| tlog_tiles::Error::MalformedHash)
}

impl HashReader for DbHashes<'_, '_> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        let missing: Vec<i64> = indexes
            .iter()
            .filter(|i| self.remembered(i).is_none())
            .map(|&i| i64::try_from(i).map_err(|_| tlog_tiles::Error::IndexesNotInTree))
            .collect::<std::result::Result<_, _>>()?;
        let mut found: HashMap<u64, Hash> = HashMap::new();
        if !missing.is_empty() {
            let mut conn = self.conn.borrow_mut();
            let rows: Vec<(i64, Vec<u8>)> = th::audit_tree_hashes
                .filter(th::idx.eq_any(&missing))
                .select((th::idx, th::hash))
                .load(&mut **conn)
                .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
            for (i, h) in rows {
                found.insert(i as u64, to_hash(&h)?);
            }
        }
        indexes
            .iter()
            .map(|i| {
                self.remembered(i)
                    .or_else(|| found.get(i))
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Maps a tree error: the stored tree is missing what the proof needs, so
/// the log is damaged (or the request names a size it does not have).
fn tree_error(e: tlog_tiles::Error) -> Error {
    Error::Unexpected(format!("audit tree: {e}"))
}

/// Stores `hashes` (stored-hash index, hash) computed by a batch.
pub fn store(conn: &mut DbConnection, hashes: &HashMap<u64, Hash>) -> Result<()> {
    let mut rows: Vec<(i64, Vec<u8>)> = hashes.iter().map(|(i, h)| (*i as i64, h.0.to_vec())).collect();
    rows.sort_unstable_by_key(|(i, _)| *i);
    for chunk in rows.chunks(500) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(i, h)| (th::idx.eq(*i), th::hash.eq(h.as_slice())))
            .collect();
        let q = diesel::insert_into(th::audit_tree_hashes).values(&values);
        match conn {
            DbConnection::Pg(c) => q.execute(c)?,
            DbConnection::Sqlite(c) => q.execute(c)?,
        };
    }
    Ok(())
}

/// The stored hash of leaf `n`.
pub fn leaf_hash(conn: &mut DbConnection, n: u64) -> Result<Option<Hash>> {
    let idx = tlog_tiles::stored_hash_index(0, n) as i64;
    let raw: Option<Vec<u8>> = th::audit_tree_hashes
        .filter(th::idx.eq(idx))
        .select(th::hash)
        .first(conn)
        .optional()?;
    raw.map(|r| to_hash(&r).map_err(tree_error)).transpose()
}

/// The root of the tree's first `size` leaves, from the stored hashes.
pub fn root(conn: &mut DbConnection, size: u64) -> Result<Hash> {
    let none = HashMap::new();
    tlog_tiles::tree_hash(size, &DbHashes::new(conn, &none)).map_err(tree_error)
}

/// The proof that leaf `n` is in the tree of size `size`.
pub fn inclusion(conn: &mut DbConnection, size: u64, n: u64) -> Result<RecordProof> {
    let none = HashMap::new();
    tlog_tiles::prove_record(size, n, &DbHashes::new(conn, &none)).map_err(tree_error)
}

/// The proof that the tree of size `to` extends the tree of size `from`.
pub fn consistency(conn: &mut DbConnection, from: u64, to: u64) -> Result<TreeProof> {
    if from == to {
        return Ok(Vec::new());
    }
    let none = HashMap::new();
    tlog_tiles::prove_tree(to, from, &DbHashes::new(conn, &none)).map_err(tree_error)
}

/// The stored hashes of the complete subtrees a tree of `size` leaves is
/// made of, left to right: all that appending to it or taking its root
/// reads. Kept between batches, they spare the sequencer reading them
/// back; a stored hash never changes once committed, so they stay right
/// whoever sequences next.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    hashes: HashMap<u64, Hash>,
}

impl Frontier {
    /// The stored-hash indexes of the frontier of `size` leaves.
    fn indexes(size: u64) -> Vec<u64> {
        tlog_tiles::sub_tree_index(0, size, Vec::new())
    }
}

/// What appending a batch of leaves computed.
#[derive(Debug)]
pub struct Appended {
    /// The new stored hashes, by stored-hash index: what to write.
    pub hashes: HashMap<u64, Hash>,
    /// The root of the grown tree.
    pub root: Hash,
    /// The grown tree's frontier, for the next batch.
    pub frontier: Frontier,
}

/// Appends leaves with `leaf_hashes` to a tree of `size` leaves, in memory
/// over the stored hashes: the new hashes to store, the new root and
/// frontier. `known` is the frontier of an earlier size, if any; the hashes
/// it lacks are read in one statement.
pub fn append(
    conn: &mut DbConnection,
    size: u64,
    leaf_hashes: &[Hash],
    known: &Frontier,
) -> Result<Appended> {
    let none = HashMap::new();
    let need = Frontier::indexes(size);
    let front = DbHashes::knowing(conn, &none, &known.hashes)
        .read_hashes(&need)
        .map_err(tree_error)?;
    let known: HashMap<u64, Hash> = need.into_iter().zip(front).collect();
    let mut pending: HashMap<u64, Hash> = HashMap::new();
    for (i, h) in leaf_hashes.iter().enumerate() {
        let n = size + i as u64;
        let new = {
            let reader = DbHashes::knowing(conn, &pending, &known);
            tlog_tiles::stored_hashes_for_record_hash(n, *h, &reader).map_err(tree_error)?
        };
        let start = tlog_tiles::stored_hash_index(0, n);
        for (k, h) in new.into_iter().enumerate() {
            pending.insert(start + k as u64, h);
        }
    }
    let new_size = size + leaf_hashes.len() as u64;
    let reader = DbHashes::knowing(conn, &pending, &known);
    let root = tlog_tiles::tree_hash(new_size, &reader).map_err(tree_error)?;
    let indexes = Frontier::indexes(new_size);
    let values = reader.read_hashes(&indexes).map_err(tree_error)?;
    let frontier = Frontier {
        hashes: indexes.into_iter().zip(values).collect(),
    };
    Ok(Appended {
        hashes: pending,
        root,
        frontier,
    })
}
