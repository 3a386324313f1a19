//! A tree's per-leaf and per-node values in the vault (leaf shares, the
//! public nodes a member checked), kept in rows of up to `ROW`
//! consecutive values rather than a row each.
//!
//! A tree of height 20 has a million leaves and two million nodes: a row
//! per value made key generation spend more on sealing and writing rows
//! than on hashing (BENCHMARKS.md, "LMS key generation on the cluster").
//!
//! - **Row.** The values with indices `start..start + size`, where `size`
//!   is a power of two no larger than the subtree's width at that level
//!   (so a row never holds two subtrees' values, which different builders
//!   deal) and `start` a multiple of it. Key: the prefix (the run or
//!   sharing), `b'g'`, `u32str(start)`: 37 bytes, apart from the 36 of a
//!   value kept alone. Value: a 64-bit big-endian map of the values
//!   present (bit `k` for index `start + k`), then those values, 32 bytes
//!   each, in order. A row is written whole, once, by the one deal or
//!   subtree that holds its indices.
//! - **Earlier trees.** Trees made before rows kept a row per value under
//!   `records::leaf_key`. A reader looks for the row first and, if there is none,
//!   for the value alone; a row that is there but lacks the index means
//!   the value is not held here.
//! - **Rules.** A member writes rows only once its own log applied an
//!   entry at [`ROWS_RULES`] (not merely once every member announced them:
//!   a leader decides what it stamps). A build before rows, replaying that
//!   durable log, stops applying at the entry, and no leader can stamp
//!   older rules after it; so an older build never goes on applying with
//!   rows it cannot read. Before, and on a replica whose log is not there
//!   yet (the entry after every member's boot takes it there: an audit
//!   tick comes every 5 s), values are written one per row, as that build
//!   does; readers take either, row by row.
//! - Erasing a sharing by its prefix erases both kinds.

use keyquorum_core::lms::federation::Layout;
use keyquorum_core::lms::Hash;
use keyquorum_store::vault::{Table, Vault};
use keyquorum_wire::Hex32;
use zeroize::Zeroizing;

use super::records::leaf_key;
use crate::cluster::Node;
use crate::error::NodeError;

/// Most values a row holds (64).
pub(crate) const ROW: u32 = 64;

/// The apply rules from which rows are written.
pub const ROWS_RULES: u16 = 18;

/// A row to write: its key and its value.
pub(crate) type Row = (Vec<u8>, Zeroizing<Vec<u8>>);

/// The key of the row whose first index is `start`.
pub(crate) fn row_key(prefix: &Hex32, start: u32) -> [u8; 37] {
    let mut k = [0u8; 37];
    k[..32].copy_from_slice(&prefix.0);
    k[32] = b'g';
    k[33..].copy_from_slice(&start.to_be_bytes());
    k
}

/// The row size of a tree's leaf shares: [`ROW`], or a subtree's every
/// leaf if it has fewer.
pub(crate) fn leaf_row(layout: &Layout) -> u32 {
    layout.per_subtree().clamp(1, ROW)
}

/// The row size of node `r` (RFC 8554 numbering: the root is 1): the
/// subtree's width at `r`'s level, at most [`ROW`]. A node above the
/// subtrees is kept alone (it is not stored by members at all).
pub(crate) fn node_row(layout: &Layout, r: u32) -> u32 {
    if r == 0 {
        return 1;
    }
    let level_width = 1u32 << (31 - r.leading_zeros());
    (level_width / layout.subtrees.max(1)).clamp(1, ROW)
}

/// `values` (32 bytes each) for indices `first..`, as rows of `size`
/// (a power of two at most [`ROW`]): a row for each aligned block the
/// indices touch, holding only the indices given.
pub(crate) fn encode(
    prefix: &Hex32,
    first: u32,
    values: &[u8],
    size: u32,
) -> Result<Vec<Row>, NodeError> {
    if !size.is_power_of_two() || size > ROW || !values.len().is_multiple_of(32) {
        return Err(NodeError::Internal(format!(
            "rows of {size} values of {} bytes",
            values.len()
        )));
    }
    let n = (values.len() / 32) as u32;
    let past = || NodeError::Internal("row indices past u32".into());
    let end = first.checked_add(n).ok_or_else(past)?;
    let mut out = Vec::new();
    let mut at = first;
    while at < end {
        let start = at & !(size - 1);
        let stop = start.checked_add(size).ok_or_else(past)?.min(end);
        let map = (at..stop).fold(0u64, |m, i| m | (1u64 << (i - start)));
        let mut row = Zeroizing::new(Vec::with_capacity(8 + 32 * (stop - at) as usize));
        row.extend_from_slice(&map.to_be_bytes());
        let from = 32 * (at - first) as usize;
        row.extend_from_slice(
            values
                .get(from..32 * (stop - first) as usize)
                .unwrap_or_default(),
        );
        out.push((row_key(prefix, start).to_vec(), row));
        at = stop;
    }
    Ok(out)
}

/// What to write for `values` (32 bytes each) at indices `first..`: rows
/// of `size` once this replica's log is at [`ROWS_RULES`], else one value
/// per row under [`leaf_key`] (what a build before rows reads).
pub(crate) fn to_write(
    node: &Node,
    prefix: &Hex32,
    first: u32,
    values: &[u8],
    size: u32,
) -> Result<Vec<Row>, NodeError> {
    if !values.len().is_multiple_of(32) {
        return Err(NodeError::Internal(format!(
            "tree values of {} bytes",
            values.len()
        )));
    }
    if node.registry(|r| r.rules) >= ROWS_RULES {
        return encode(prefix, first, values, size);
    }
    let end = first
        .checked_add((values.len() / 32) as u32)
        .ok_or_else(|| NodeError::Internal("row indices past u32".into()))?;
    (first..end)
        .zip(values.chunks_exact(32))
        .map(|(i, v)| Ok((leaf_key(prefix, i).to_vec(), Zeroizing::new(v.to_vec()))))
        .collect()
}

/// The value at `index` in a row's bytes, if the row holds it.
fn value_in(row: &[u8], index_in_row: u32) -> Result<Option<Zeroizing<Hash>>, NodeError> {
    let corrupt = || NodeError::Internal("a stored row of a tree is malformed".into());
    let (map, values) = row.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let map = u64::from_be_bytes(*map);
    if values.len() != 32 * map.count_ones() as usize || index_in_row >= 64 {
        return Err(corrupt());
    }
    if map & (1u64 << index_in_row) == 0 {
        return Ok(None);
    }
    let before = (map & ((1u64 << index_in_row) - 1)).count_ones() as usize;
    let mut h = Zeroizing::new([0u8; 32]);
    h.copy_from_slice(
        values
            .get(32 * before..32 * before + 32)
            .ok_or_else(corrupt)?,
    );
    Ok(Some(h))
}

fn vault_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Internal(format!("vault: {e}"))
}

/// The value at `index` under `prefix` in `table`, kept in rows of `size`
/// (or, for a tree made before rows, alone).
pub(crate) fn read(
    vault: &Vault,
    table: Table,
    prefix: &Hex32,
    index: u32,
    size: u32,
) -> Result<Option<Zeroizing<Hash>>, NodeError> {
    let size = size.clamp(1, ROW);
    let start = index & !(size - 1);
    match vault
        .get(table, &row_key(prefix, start))
        .map_err(vault_err)?
    {
        Some(row) => value_in(&row, index - start),
        None => alone(vault, table, prefix, index),
    }
}

/// The value at `index` kept alone, as trees made before rows keep them.
fn alone(
    vault: &Vault,
    table: Table,
    prefix: &Hex32,
    index: u32,
) -> Result<Option<Zeroizing<Hash>>, NodeError> {
    let Some(v) = vault
        .get(table, &leaf_key(prefix, index))
        .map_err(vault_err)?
    else {
        return Ok(None);
    };
    let h: Hash = v
        .as_slice()
        .try_into()
        .map_err(|_| NodeError::Internal("a stored value of a tree is not 32 bytes".into()))?;
    Ok(Some(Zeroizing::new(h)))
}

/// The values at `range` (each row read once), `None` where one is not
/// held here.
pub(crate) fn read_range(
    vault: &Vault,
    table: Table,
    prefix: &Hex32,
    range: std::ops::Range<u32>,
    size: u32,
) -> Result<Vec<Option<Zeroizing<Hash>>>, NodeError> {
    let size = size.clamp(1, ROW);
    let mut out = Vec::with_capacity(range.len());
    let mut at = range.start;
    while at < range.end {
        let start = at & !(size - 1);
        let stop = start
            .checked_add(size)
            .ok_or_else(|| NodeError::Internal("row indices past u32".into()))?
            .min(range.end);
        match vault
            .get(table, &row_key(prefix, start))
            .map_err(vault_err)?
        {
            Some(row) => {
                for i in at..stop {
                    out.push(value_in(&row, i - start)?);
                }
            }
            None => {
                for i in at..stop {
                    out.push(alone(vault, table, prefix, i)?);
                }
            }
        }
        at = stop;
    }
    Ok(out)
}

/// How many values `table` holds under `prefix` (rows counted by their
/// values): how many leaves' shares a member holds of a sharing.
pub fn count_values(vault: &Vault, table: Table, prefix: &[u8]) -> Result<usize, NodeError> {
    let mut n = 0;
    for k in vault.keys(table, prefix).map_err(vault_err)? {
        if k.len() == 37 && k.get(32) == Some(&b'g') {
            let row = vault.get(table, &k).map_err(vault_err)?.unwrap_or_default();
            let map = row.first_chunk::<8>().copied().unwrap_or_default();
            n += u64::from_be_bytes(map).count_ones() as usize;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyquorum_core::lms::{LmotsType, LmsType};

    fn values(range: std::ops::Range<u32>) -> Vec<u8> {
        range.flat_map(|i| [i as u8; 32]).collect()
    }

    #[test]
    fn rows_hold_aligned_blocks_and_only_the_indices_given() {
        let p = Hex32([7; 32]);
        // 70..200 in rows of 64: 64..128 (from 70), 128..192, 192..200.
        let rows = encode(&p, 70, &values(70..200), 64).unwrap();
        let starts: Vec<[u8; 4]> = rows
            .iter()
            .map(|(k, _)| k[33..].try_into().unwrap())
            .collect();
        assert_eq!(starts, [64u32, 128, 192].map(u32::to_be_bytes).to_vec());
        let first = &rows[0].1;
        assert_eq!(first.len(), 8 + 32 * 58);
        assert_eq!(value_in(first, 5).unwrap(), None, "69 was not given");
        assert_eq!(*value_in(first, 6).unwrap().unwrap(), [70u8; 32]);
        assert_eq!(*value_in(first, 63).unwrap().unwrap(), [127u8; 32]);
        assert_eq!(*value_in(&rows[2].1, 7).unwrap().unwrap(), [199u8; 32]);
        assert_eq!(value_in(&rows[2].1, 8).unwrap(), None);
    }

    #[test]
    fn a_malformed_row_is_an_error_not_a_value() {
        let p = Hex32([1; 32]);
        let mut row = encode(&p, 0, &values(0..4), 4).unwrap().remove(0).1;
        row.pop();
        assert!(value_in(&row, 0).is_err());
        assert!(value_in(&[0u8; 3], 0).is_err());
        // A map claiming more values than the row holds.
        let mut lying = Zeroizing::new(vec![0xffu8; 8]);
        lying.extend_from_slice(&[0u8; 64]);
        assert!(value_in(&lying, 1).is_err());
        assert!(encode(&p, 0, &values(0..2), 3).is_err());
        assert!(encode(&p, 0, &[0u8; 31], 4).is_err());
    }

    #[test]
    fn reads_find_rows_and_the_values_earlier_trees_kept_alone() {
        use keyquorum_store::vault::{KdfParams, Op};
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(
            &dir.path().join("v.redb"),
            &keyquorum_store::Passphrase::new(b"pw".to_vec()),
            KdfParams::insecure_fast(),
        )
        .unwrap();
        let (new, old) = (Hex32([1; 32]), Hex32([2; 32]));
        // A sharing in rows of 8, leaves 3..20 (a cut at 3).
        let rows = encode(&new, 3, &values(3..20), 8).unwrap();
        let ops: Vec<Op<'_>> = rows
            .iter()
            .map(|(k, v)| Op::Put(Table::LeafShares, k.as_slice(), v.as_slice()))
            .collect();
        vault.apply(&ops).unwrap();
        // An earlier tree's values, one row each.
        for i in 0..20u32 {
            vault
                .put(Table::LeafShares, &leaf_key(&old, i), &[i as u8; 32])
                .unwrap();
        }
        for prefix in [&new, &old] {
            assert_eq!(
                *read(&vault, Table::LeafShares, prefix, 17, 8)
                    .unwrap()
                    .unwrap(),
                [17u8; 32]
            );
            let got = read_range(&vault, Table::LeafShares, prefix, 2..20, 8).unwrap();
            assert_eq!(got.len(), 18);
            for (i, v) in (2u32..).zip(&got).skip(1) {
                assert_eq!(v.as_deref(), Some(&[i as u8; 32]));
            }
            assert_eq!(
                read(&vault, Table::LeafShares, prefix, 25, 8).unwrap(),
                None
            );
        }
        // In the rows, leaf 2 is not held (before the cut) and no lone value
        // is looked for; the earlier tree's is there.
        assert_eq!(read(&vault, Table::LeafShares, &new, 2, 8).unwrap(), None);
        assert_eq!(
            read_range(&vault, Table::LeafShares, &old, 2..3, 8).unwrap()[0].as_deref(),
            Some(&[2u8; 32])
        );
        assert_eq!(count_values(&vault, Table::LeafShares, &new.0).unwrap(), 17);
        assert_eq!(count_values(&vault, Table::LeafShares, &old.0).unwrap(), 20);
        // A row that is not well formed is an error, never a value.
        vault
            .put(Table::LeafShares, &row_key(&new, 8), &[0xff; 40])
            .unwrap();
        assert!(read(&vault, Table::LeafShares, &new, 9, 8).is_err());
    }

    #[test]
    fn row_sizes_never_span_two_subtrees() {
        // H5 in 4 subtrees: 8 leaves each, so rows of 8 leaves; a subtree's
        // root level is one node wide.
        let small = Layout::new(LmsType::H5, LmotsType::W4, 4).unwrap();
        assert_eq!(leaf_row(&small), 8);
        assert_eq!(node_row(&small, 32), 8);
        assert_eq!(node_row(&small, 4), 1);
        assert_eq!(node_row(&small, 8), 2);
        // H15 in 4 subtrees: rows of 64 low down, narrower near the roots.
        let big = Layout::new(LmsType::H15, LmotsType::W4, 4).unwrap();
        assert_eq!(leaf_row(&big), 64);
        assert_eq!(node_row(&big, 1 << 15), 64);
        assert_eq!(node_row(&big, 1 << 7), 32);
        for layout in [small, big] {
            for s in 0..layout.subtrees {
                let leaves = layout.leaves_of(s);
                let size = leaf_row(&layout);
                assert_eq!(leaves.start % size, 0);
                assert_eq!(leaves.len() as u32 % size, 0);
            }
        }
    }
}
