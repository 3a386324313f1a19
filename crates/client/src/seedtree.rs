//! The client's side of a federated signing tree (DESIGN.md §3.5): the
//! client is the signer. It asks for a leaf with a one-time X25519 key in
//! its signed request; the members seal their shares of the leaf's secret
//! to that key; here, and only here, the leaf's one-time key is rebuilt,
//! checked against the tree, used once, and erased
//! (`keyquorum_core::lms::federation::sign_leaf`).

use std::collections::BTreeMap;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, Serializable};
use keyquorum_core::lms::federation::{sign_leaf, LeafShare};
use keyquorum_core::lms::hss::HssPublicKey;
use keyquorum_core::lms::tree::AuthPath;
use keyquorum_core::ParticipantId;
use keyquorum_wire::seedtree::{
    share_aad, CreateSeedtreeRequest, ReshareSeedtreeRequest, SeedtreeInfo, SeedtreeLeaf,
    SeedtreeList, SeedtreeProgress, SeedtreeSignature, SignSeedtreeRequest, SHARE_HPKE_INFO,
};
use keyquorum_wire::{Hex, Hex32, NodeId};
use zeroize::Zeroizing;

use crate::{Client, ClientError};

type KemT = X25519HkdfSha256;

/// A one-time X25519 key pair a leaf's shares are sealed to.
pub struct ReplyKey {
    secret: <KemT as Kem>::PrivateKey,
    public: <KemT as Kem>::PublicKey,
}

impl core::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplyKey")
            .field("public", &self.public())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ReplyKey {
    /// A fresh key pair from the OS RNG.
    pub fn generate() -> Self {
        let (secret, public) = KemT::gen_keypair(&mut rand_core_09::UnwrapErr(rand_core_09::OsRng));
        Self { secret, public }
    }

    /// The public key to put in the sign request.
    pub fn public(&self) -> Hex32 {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.public.to_bytes());
        Hex32(out)
    }
}

/// Open the shares in `leaf` with `key`, rebuild the leaf's one-time key
/// from `threshold` of them, sign `message`, and check the signature
/// against the tree's public key (which the caller should pin: `public`,
/// if given, must be the leaf's). Shares that do not open are left out; a
/// set of shares that rebuilds a key the tree does not hold is skipped for
/// another set.
pub fn sign_with_leaf(
    leaf: &SeedtreeLeaf,
    key: &ReplyKey,
    message: &[u8],
    public: Option<&[u8]>,
) -> Result<SeedtreeSignature, ClientError> {
    let bad = |m: String| ClientError::Config(format!("leaf {}: {m}", leaf.leaf));
    if public.is_some_and(|p| p != leaf.public_key.0.as_slice()) {
        return Err(bad("the node answered for another public key".into()));
    }
    let pk = HssPublicKey::from_bytes(&leaf.public_key.0).map_err(|e| bad(e.to_string()))?;
    let mut opened: Vec<(ParticipantId, LeafShare)> = Vec::new();
    for s in &leaf.shares {
        let Ok(enc) = <KemT as Kem>::EncappedKey::from_bytes(&s.enc.0) else {
            continue;
        };
        let Ok(bytes) = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, KemT>(
            &OpModeR::Base,
            &key.secret,
            &enc,
            SHARE_HPKE_INFO,
            &s.ciphertext.0,
            &share_aad(&leaf.run, leaf.leaf, s.node),
        ) else {
            continue;
        };
        let bytes = Zeroizing::new(bytes);
        let (Ok(share), Ok(id)) = (
            LeafShare::from_bytes(&bytes),
            ParticipantId::new(u16::try_from(u64::from(s.node)).unwrap_or(0)),
        ) else {
            continue;
        };
        if !opened.iter().any(|(p, _)| *p == id) {
            opened.push((id, share));
        }
    }
    let t = usize::from(leaf.threshold);
    if t == 0 || t > 64 || opened.len() < t {
        return Err(bad(format!(
            "{} shares opened; {t} are needed",
            opened.len()
        )));
    }
    let path = AuthPath(leaf.path.iter().map(|h| h.0).collect());
    let mut last = None;
    for set in subsets(opened.len(), t) {
        let shares: BTreeMap<ParticipantId, LeafShare> =
            set.iter().filter_map(|i| opened.get(*i).cloned()).collect();
        match sign_leaf(&pk, leaf.leaf, &shares, &leaf.leaf_node.0, &path, message) {
            Ok(signature) => {
                return Ok(SeedtreeSignature {
                    signature: Hex(signature),
                    leaf: leaf.leaf,
                })
            }
            Err(e) => last = Some(e),
        }
    }
    Err(bad(format!(
        "no {t} of the {} shares rebuild the leaf's key: {}",
        opened.len(),
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// `k`-subsets of `0..n` to try, at most 256: first the first `k`, then
/// the first `k` without each one in turn (one bad share is passed over at
/// once, however many there are), then the others in order.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    if k <= n {
        out.push((0..k).collect());
        for skip in 0..n {
            let set: Vec<usize> = (0..n).filter(|i| *i != skip).take(k).collect();
            if set.len() == k && !out.contains(&set) {
                out.push(set);
            }
        }
    }
    let mut cur = Vec::with_capacity(k);
    fn walk(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            if !out.contains(cur) {
                out.push(cur.clone());
            }
            return;
        }
        for i in start..n {
            if out.len() >= 256 {
                return;
            }
            cur.push(i);
            walk(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    walk(0, n, k, &mut cur, &mut out);
    out
}

/// Check an RFC 8554 HSS signature under `public_key`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    HssPublicKey::from_bytes(public_key).is_ok_and(|pk| pk.verify(message, signature).is_ok())
}

impl Client {
    /// Create a signing tree (an admin).
    pub async fn seedtree_create(
        &self,
        req: &CreateSeedtreeRequest,
    ) -> Result<SeedtreeInfo, ClientError> {
        self.post("/v1/seedtrees", req).await
    }

    /// Move tree `name`'s unused leaves to `members` (an admin; allowed
    /// for the target of an approved drain, keeping the tree's
    /// `threshold`). The node's answer is checked: the holders asked for.
    pub async fn seedtree_reshare(
        &self,
        name: &str,
        threshold: u16,
        members: &[NodeId],
    ) -> Result<SeedtreeInfo, ClientError> {
        let mut want = members.to_vec();
        want.sort_unstable();
        want.dedup();
        let req = ReshareSeedtreeRequest {
            members: want.clone(),
            threshold,
        };
        let info: SeedtreeInfo = self
            .post(&format!("/v1/seedtrees/{name}/reshare"), &req)
            .await?;
        let mut got = info.members.clone();
        got.sort_unstable();
        if info.name != name || got != want || info.threshold != threshold {
            return Err(ClientError::Verification(format!(
                "the node answered a reshare of {name} with tree {} held {}-of-{:?}",
                info.name, info.threshold, info.members
            )));
        }
        Ok(info)
    }

    /// Every tree.
    pub async fn seedtrees(&self) -> Result<SeedtreeList, ClientError> {
        self.get("/v1/seedtrees").await
    }

    /// One tree.
    pub async fn seedtree(&self, name: &str) -> Result<SeedtreeInfo, ClientError> {
        self.get(&format!("/v1/seedtrees/{name}")).await
    }

    /// How far the key generation of `name` has come (ask the node the
    /// create request went to).
    pub async fn seedtree_progress(&self, name: &str) -> Result<SeedtreeProgress, ClientError> {
        self.get(&format!("/v1/seedtrees/{name}/progress")).await
    }

    /// Ask for a leaf of `name` to sign `message` with, its shares sealed
    /// to `key` (the raw step; [`Client::seedtree_sign`] does the rest).
    pub async fn seedtree_leaf(
        &self,
        name: &str,
        message: &[u8],
        key: &ReplyKey,
    ) -> Result<SeedtreeLeaf, ClientError> {
        self.post(
            &format!("/v1/seedtrees/{name}/sign"),
            &SignSeedtreeRequest {
                message: Hex(message.to_vec()),
                reply_key: key.public(),
            },
        )
        .await
    }

    /// Sign `message` with tree `name`: a fresh leaf, its key rebuilt and
    /// used here once, the signature checked against the tree's public key
    /// (`public`, if given: pin it).
    pub async fn seedtree_sign(
        &self,
        name: &str,
        message: &[u8],
        public: Option<&[u8]>,
    ) -> Result<SeedtreeSignature, ClientError> {
        let key = ReplyKey::generate();
        let leaf = self.seedtree_leaf(name, message, &key).await?;
        sign_with_leaf(&leaf, &key, message, public)
    }
}
