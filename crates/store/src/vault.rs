//! The vault: a node's secrets in its own redb file, every value sealed.
//!
//! Sealing: XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha, 24-byte random
//! nonce per value) under a 32-byte key derived with Argon2id (RFC 9106) from
//! the operator's passphrase and a random salt stored in the file. The
//! associated data binds each ciphertext to its table and key, so a value
//! moved to another slot does not open. A verifier value sealed at creation
//! tells a wrong passphrase apart from a damaged file.
//!
//! Writes are redb transactions committed with immediate durability (fsync):
//! [`Vault::take`] deletes a value durably before returning it, which is how a
//! signing nonce is made unusable before its signature share leaves the node.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use redb::{Database, ReadableTable, TableDefinition};
use zeroize::{Zeroize, Zeroizing};

use crate::closed::{ClosedOnDrop, FileHandle};

/// Errors from the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The passphrase does not open this vault (or its header was altered:
    /// the key derives from the salt and the parameters too, so an altered
    /// header no longer opens it either).
    #[error("the passphrase does not open this vault (or its header was altered)")]
    WrongPassphrase,
    /// A stored value failed authentication: the file was altered or damaged.
    #[error("vault value in {table} failed authentication (file altered or damaged)")]
    Corrupt {
        /// The table holding the bad value.
        table: &'static str,
    },
    /// The vault's header is missing or malformed.
    #[error("vault header: {0}")]
    Header(&'static str),
    /// Invalid key-derivation parameters.
    #[error("key derivation: {0}")]
    Kdf(String),
    /// The underlying database failed.
    #[error("vault storage: {0}")]
    Storage(String),
}

macro_rules! storage_err {
    ($($t:ty),*) => {$(
        impl From<$t> for VaultError {
            fn from(e: $t) -> Self {
                VaultError::Storage(e.to_string())
            }
        }
    )*};
}
storage_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The operator's passphrase (or key-file contents). Zeroized on drop, never
/// printed.
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wrap passphrase bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }
}

impl core::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Argon2id cost parameters, stored in the vault header at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: above the OWASP and RFC 9106 §4 minimums.
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl KdfParams {
    /// The most memory a vault may ask Argon2 for: 1 GiB. The parameters
    /// are read from the file before anything in it can be checked, so a
    /// tampered header must not be able to ask for any amount.
    pub const MAX_M_KIB: u32 = 1024 * 1024;
    /// The most passes.
    pub const MAX_T: u32 = 16;
    /// The most lanes.
    pub const MAX_P: u32 = 8;

    /// Whether these are parameters a vault may have (within the caps,
    /// and what Argon2id accepts).
    pub fn check(self) -> Result<Self, VaultError> {
        if self.m_kib > Self::MAX_M_KIB || self.t > Self::MAX_T || self.p > Self::MAX_P {
            return Err(VaultError::Kdf(format!(
                "Argon2id parameters m={} KiB, t={}, p={} are past the caps ({} KiB, {}, {})",
                self.m_kib,
                self.t,
                self.p,
                Self::MAX_M_KIB,
                Self::MAX_T,
                Self::MAX_P
            )));
        }
        Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| VaultError::Kdf(e.to_string()))?;
        Ok(self)
    }

    /// Cheap parameters for tests and throw-away dev clusters (1 MiB, 1
    /// pass). Never use them for a vault that protects real keys.
    pub fn insecure_fast() -> Self {
        Self {
            m_kib: 1024,
            t: 1,
            p: 1,
        }
    }

    fn to_bytes(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.m_kib.to_be_bytes());
        out[4..8].copy_from_slice(&self.t.to_be_bytes());
        out[8..].copy_from_slice(&self.p.to_be_bytes());
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        if b.len() != 12 {
            return None;
        }
        Some(Self {
            m_kib: word(0)?,
            t: word(4)?,
            p: word(8)?,
        })
    }
}

/// The vault's tables. Keys are opaque bytes chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Table {
    /// The node's identity and encryption secret keys.
    Identity,
    /// Key shares, one per (key, epoch).
    Shares,
    /// Precomputed signing nonces.
    Nonces,
    /// Protocol state that must survive a restart (pending shares of an
    /// operation not yet committed).
    Pending,
    /// A messaging endpoint's one-time prekey secrets, by public key.
    Prekeys,
    /// Beside a pending share (same key): the SHA-256 of the group key this
    /// node computed with it, checked against the committed record before
    /// the share is promoted.
    PendingGroups,
    /// A signing tree's leaf-secret shares, by (sharing, leaf): rows of up
    /// to 64 leaves, or one leaf per row where written before the log was
    /// at the rules of rows (the node crate's `seedtree::rows`).
    LeafShares,
    /// A signing tree's public nodes this member checked at key
    /// generation, by (run, node number), in rows as [`Table::LeafShares`].
    TreeNodes,
    /// Which request each of a signing tree's leaves is locked to, by
    /// (run, leaf): a leaf is locked once, for good.
    LeafLocks,
    /// The reset requests this node has signed, by request id: each once,
    /// for good (whatever a log rewritten by a lying leader says later).
    ResetsSigned,
    /// This guardian's own guess count per PIN-protected secret, by
    /// account (`keyquorum_core::oprf::pin::Counter`).
    PinCounts,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Identity => "identity",
            Table::Shares => "shares",
            Table::Nonces => "nonces",
            Table::Pending => "pending",
            Table::Prekeys => "prekeys",
            Table::PendingGroups => "pending-groups",
            Table::LeafShares => "leaf-shares",
            Table::TreeNodes => "tree-nodes",
            Table::LeafLocks => "leaf-locks",
            Table::ResetsSigned => "resets-signed",
            Table::PinCounts => "pin-counts",
        }
    }

    fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }

    const ALL: [Table; 11] = [
        Table::Identity,
        Table::Shares,
        Table::Nonces,
        Table::Pending,
        Table::Prekeys,
        Table::PendingGroups,
        Table::LeafShares,
        Table::TreeNodes,
        Table::LeafLocks,
        Table::ResetsSigned,
        Table::PinCounts,
    ];
}

const HEADER: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("header");
const DOMAIN: &[u8] = b"keyquorum-vault-v1";
const VERIFIER: &[u8] = b"keyquorum vault verifier";
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 24;

/// The sealing key, derived from the passphrase. Zeroized on drop.
struct SealKey(XChaCha20Poly1305);

/// One write in a [`Vault::apply`] batch.
#[derive(Debug)]
pub enum Op<'a> {
    /// Insert or overwrite a value.
    Put(Table, &'a [u8], &'a [u8]),
    /// Delete a value (absent is fine).
    Delete(Table, &'a [u8]),
}

/// A node's sealed secret store.
pub struct Vault {
    // Fields drop in declaration order: the database, then the flag.
    db: Database,
    key: SealKey,
    closed: ClosedOnDrop,
}

impl core::fmt::Debug for Vault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

impl Vault {
    /// Open the vault at `path`, creating it (with fresh salt and `params`)
    /// if it does not exist. An existing vault keeps its stored parameters.
    pub fn open(
        path: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<Self, VaultError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        let header = {
            let mut h = tx.open_table(HEADER)?;
            for t in Table::ALL {
                tx.open_table(t.def())?;
            }
            let salt = h.get("salt")?.map(|v| v.value().to_vec());
            let kdf = h.get("kdf")?.map(|v| v.value().to_vec());
            let verifier = h.get("verifier")?.map(|v| v.value().to_vec());
            match (salt, kdf, verifier) {
                (Some(s), Some(k), Some(v)) => Some((s, k, v)),
                (None, None, None) => {
                    let params = params.check()?;
                    let mut salt = [0u8; 16];
                    OsRng.fill_bytes(&mut salt);
                    let key = derive(passphrase, &salt, params)?;
                    let verifier = seal(&key, b"\x00verifier", VERIFIER)?;
                    h.insert("salt", salt.as_slice())?;
                    h.insert("kdf", params.to_bytes().as_slice())?;
                    h.insert("verifier", verifier.as_slice())?;
                    drop(h);
                    tx.commit()?;
                    return Ok(Self {
                        db,
                        key,
                        closed: ClosedOnDrop::new(),
                    });
                }
                _ => return Err(VaultError::Header("incomplete header")),
            }
        };
        tx.abort()?;
        let (salt, kdf, verifier) = header.ok_or(VaultError::Header("missing"))?;
        let params = KdfParams::from_bytes(&kdf)
            .ok_or(VaultError::Header("bad kdf parameters"))?
            .check()
            .map_err(|_| VaultError::Header("kdf parameters past the caps (altered?)"))?;
        let key = derive(passphrase, &salt, params)?;
        match open(&key, b"\x00verifier", &verifier) {
            Ok(v) if v.as_slice() == VERIFIER => Ok(Self {
                db,
                key,
                closed: ClosedOnDrop::new(),
            }),
            _ => Err(VaultError::WrongPassphrase),
        }
    }

    /// A handle that tells when the vault file is closed (every holder of
    /// this vault dropped), so it can be opened again.
    pub fn file(&self) -> FileHandle {
        self.closed.handle()
    }

    /// Read and open one value.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table.def())?;
        let Some(v) = t.get(key)? else {
            return Ok(None);
        };
        let sealed = v.value();
        open(&self.key, &aad(table, key), sealed)
            .map(Some)
            .map_err(|_| VaultError::Corrupt {
                table: table.name(),
            })
    }

    /// Seal and store one value (durable on return).
    pub fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), VaultError> {
        self.apply(&[Op::Put(table, key, value)])
    }

    /// Delete one value (durable on return).
    pub fn delete(&self, table: Table, key: &[u8]) -> Result<(), VaultError> {
        self.apply(&[Op::Delete(table, key)])
    }

    /// Apply several writes atomically in one durable transaction.
    pub fn apply(&self, ops: &[Op<'_>]) -> Result<(), VaultError> {
        let tx = self.db.begin_write()?;
        for op in ops {
            match op {
                Op::Put(table, key, value) => {
                    let sealed = seal(&self.key, &aad(*table, key), value)?;
                    tx.open_table(table.def())?
                        .insert(*key, sealed.as_slice())?;
                }
                Op::Delete(table, key) => {
                    tx.open_table(table.def())?.remove(*key)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove a value and return it. The removal is committed durably before
    /// this returns, so a crash after it can never hand the value out again.
    /// A value that fails authentication is left in place.
    pub fn take(&self, table: Table, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, VaultError> {
        self.take_many(table, &[key])?.pop().unwrap_or(Ok(None))
    }

    /// [`take`](Self::take) for several keys in one durable transaction
    /// (group commit: one sync to disk for the lot). Each key gets its own
    /// result; a key named twice is handed out once.
    #[allow(
        clippy::type_complexity,
        reason = "one result per key inside the transaction's result"
    )]
    pub fn take_many(
        &self,
        table: Table,
        keys: &[&[u8]],
    ) -> Result<Vec<Result<Option<Zeroizing<Vec<u8>>>, VaultError>>, VaultError> {
        let tx = self.db.begin_write()?;
        let mut out = Vec::with_capacity(keys.len());
        {
            let mut t = tx.open_table(table.def())?;
            for key in keys {
                let sealed = match t.get(*key)? {
                    Some(v) => v.value().to_vec(),
                    None => {
                        out.push(Ok(None));
                        continue;
                    }
                };
                match open(&self.key, &aad(table, key), &sealed) {
                    Ok(opened) => {
                        t.remove(*key)?;
                        out.push(Ok(Some(opened)));
                    }
                    Err(_) => out.push(Err(VaultError::Corrupt {
                        table: table.name(),
                    })),
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// Store each value whose key holds none yet, in one durable
    /// transaction (group commit). Each key's result is `None` if its value
    /// was stored, or the value it already held (nothing written). The
    /// check and the write are one step: of two items with the same key,
    /// the first is stored and the second is answered with it.
    #[allow(
        clippy::type_complexity,
        reason = "one result per item inside the transaction's result"
    )]
    pub fn put_absent_many(
        &self,
        table: Table,
        items: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Option<Zeroizing<Vec<u8>>>, VaultError>>, VaultError> {
        let tx = self.db.begin_write()?;
        let mut out = Vec::with_capacity(items.len());
        {
            let mut t = tx.open_table(table.def())?;
            for (key, value) in items {
                let held = t.get(*key)?.map(|v| v.value().to_vec());
                match held {
                    Some(sealed) => out.push(
                        open(&self.key, &aad(table, key), &sealed)
                            .map(Some)
                            .map_err(|_| VaultError::Corrupt {
                                table: table.name(),
                            }),
                    ),
                    None => {
                        let sealed = seal(&self.key, &aad(table, key), value)?;
                        t.insert(*key, sealed.as_slice())?;
                        out.push(Ok(None));
                    }
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// The keys in `table` that start with `prefix`, in order.
    pub fn keys(&self, table: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, VaultError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table.def())?;
        let mut out = Vec::new();
        for item in t.range(prefix..)? {
            let (k, _) = item?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            out.push(k.to_vec());
        }
        Ok(out)
    }

    /// Count the values in `table` whose key starts with `prefix`.
    pub fn count(&self, table: Table, prefix: &[u8]) -> Result<usize, VaultError> {
        Ok(self.keys(table, prefix)?.len())
    }
}

fn aad(table: Table, key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(DOMAIN.len() + table.name().len() + 1 + key.len());
    a.extend_from_slice(DOMAIN);
    a.extend_from_slice(table.name().as_bytes());
    a.push(0);
    a.extend_from_slice(key);
    a
}

fn derive(passphrase: &Passphrase, salt: &[u8], p: KdfParams) -> Result<SealKey, VaultError> {
    let params =
        Params::new(p.m_kib, p.t, p.p, Some(32)).map_err(|e| VaultError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(&passphrase.0, salt, key.as_mut())
        .map_err(|e| VaultError::Kdf(e.to_string()))?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    key.zeroize();
    Ok(SealKey(cipher))
}

fn seal(key: &SealKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ct = key
        .0
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| VaultError::Storage("encryption failed".into()))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(FORMAT);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open(key: &SealKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, ()> {
    let (version, rest) = sealed.split_first().ok_or(())?;
    if *version != FORMAT || rest.len() < NONCE_LEN {
        return Err(());
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| ())?;
    key.0
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.as_bytes().to_vec())
    }

    #[test]
    fn round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        {
            let v = Vault::open(&path, &pass("correct horse"), KdfParams::insecure_fast()).unwrap();
            v.put(Table::Shares, b"k1/1", b"secret share").unwrap();
            v.put(Table::Nonces, b"k1/1/a", b"n1").unwrap();
            v.put(Table::Nonces, b"k1/1/b", b"n2").unwrap();
            v.put(Table::Nonces, b"k2/1/a", b"n3").unwrap();
        }
        let v = Vault::open(&path, &pass("correct horse"), KdfParams::default()).unwrap();
        assert_eq!(
            v.get(Table::Shares, b"k1/1").unwrap().unwrap().as_slice(),
            b"secret share"
        );
        assert_eq!(
            v.keys(Table::Nonces, b"k1/").unwrap(),
            vec![b"k1/1/a".to_vec(), b"k1/1/b".to_vec()]
        );
        assert_eq!(
            v.take(Table::Nonces, b"k1/1/a")
                .unwrap()
                .unwrap()
                .as_slice(),
            b"n1"
        );
        assert!(v.take(Table::Nonces, b"k1/1/a").unwrap().is_none());
        assert!(v.get(Table::Shares, b"absent").unwrap().is_none());
    }

    #[test]
    fn put_absent_stores_each_key_once_and_answers_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        {
            let v = Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap();
            v.put(Table::LeafLocks, b"a", b"first").unwrap();
            let got = v
                .put_absent_many(
                    Table::LeafLocks,
                    &[(b"a", b"second"), (b"b", b"one"), (b"b", b"two")],
                )
                .unwrap();
            let got: Vec<Option<Vec<u8>>> = got
                .into_iter()
                .map(|r| r.unwrap().map(|v| v.to_vec()))
                .collect();
            assert_eq!(got, [Some(b"first".to_vec()), None, Some(b"one".to_vec())]);
        }
        // Durable: what was stored is there after reopening, and nothing else.
        let v = Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap();
        assert_eq!(
            v.get(Table::LeafLocks, b"a").unwrap().unwrap().as_slice(),
            b"first"
        );
        assert_eq!(
            v.get(Table::LeafLocks, b"b").unwrap().unwrap().as_slice(),
            b"one"
        );
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        drop(Vault::open(&path, &pass("right"), KdfParams::insecure_fast()).unwrap());
        let err = Vault::open(&path, &pass("wrong"), KdfParams::insecure_fast()).unwrap_err();
        assert!(matches!(err, VaultError::WrongPassphrase), "{err}");
    }

    /// The header is read before anything can be checked: parameters past
    /// the caps are refused before Argon2 runs (a tampered file cannot ask
    /// for any amount of memory), parameters within them but altered, or
    /// an altered salt, no longer open the vault; nor is a new vault made
    /// with parameters past the caps.
    #[test]
    fn an_altered_header_is_refused_before_it_costs_anything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        drop(Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap());
        let set = |key: &str, value: &[u8]| {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(HEADER).unwrap().insert(key, value).unwrap();
            tx.commit().unwrap();
        };
        let huge = KdfParams {
            m_kib: u32::MAX,
            t: u32::MAX,
            p: 1,
        };
        set("kdf", &huge.to_bytes());
        let err = Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap_err();
        assert!(
            matches!(err, VaultError::Header(m) if m.contains("caps")),
            "{err}"
        );
        let altered = KdfParams {
            m_kib: 2048,
            t: 1,
            p: 1,
        };
        set("kdf", &altered.to_bytes());
        let err = Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap_err();
        assert!(matches!(err, VaultError::WrongPassphrase), "{err}");
        set("kdf", &KdfParams::insecure_fast().to_bytes());
        drop(Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap());
        set("salt", &[0u8; 16]);
        let err = Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap_err();
        assert!(matches!(err, VaultError::WrongPassphrase), "{err}");

        let fresh = dir.path().join("fresh.redb");
        let err = Vault::open(&fresh, &pass("p"), huge).unwrap_err();
        assert!(matches!(err, VaultError::Kdf(_)), "{err}");
    }

    #[test]
    fn nothing_is_stored_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        let marker = b"PLAINTEXT-MARKER-0123456789";
        {
            let v = Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap();
            v.put(Table::Shares, b"key", marker).unwrap();
        }
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(marker.len()).any(|w| w == marker));
    }

    #[test]
    fn moved_or_altered_values_fail_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        let v = Vault::open(&path, &pass("p"), KdfParams::insecure_fast()).unwrap();
        v.put(Table::Shares, b"a", b"value-a").unwrap();
        // Copy the sealed bytes of "a" under key "b", and a flipped copy under "c".
        let sealed = {
            let tx = v.db.begin_read().unwrap();
            let t = tx.open_table(Table::Shares.def()).unwrap();
            let s = t.get(b"a".as_slice()).unwrap().unwrap().value().to_vec();
            s
        };
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        {
            let tx = v.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(Table::Shares.def()).unwrap();
                t.insert(b"b".as_slice(), sealed.as_slice()).unwrap();
                t.insert(b"c".as_slice(), flipped.as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(matches!(
            v.get(Table::Shares, b"b"),
            Err(VaultError::Corrupt { .. })
        ));
        assert!(matches!(
            v.get(Table::Shares, b"c"),
            Err(VaultError::Corrupt { .. })
        ));
        // A corrupt value is not removed by take.
        assert!(matches!(
            v.take(Table::Shares, b"c"),
            Err(VaultError::Corrupt { .. })
        ));
        assert_eq!(v.count(Table::Shares, b"c").unwrap(), 1);
    }

    #[test]
    fn passphrase_debug_is_redacted() {
        assert_eq!(format!("{:?}", pass("hunter2")), "Passphrase(<redacted>)");
    }
}
