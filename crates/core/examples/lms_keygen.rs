//! LMS key generation on one core, against its physical limit and against
//! an existing implementation, measured in the same run (issue #21):
//!
//! - **limit**: the SHA-256 compressions the key needs (every leaf's key
//!   derivation, its Winternitz chains and public-key hash, the leaf hashes,
//!   two blocks per interior node) at this CPU's measured rate of bare
//!   `sha2::compress256` calls, the best of 1, 2 and 4 independent states
//!   in flight (`lms::compression_rate`);
//! - **ours**: `keyquorum_core::lms` building the whole tree (one thread),
//!   and the same as `--subtrees` aligned subtrees built one after another
//!   plus the tree above them (the federation's builders' work; they give
//!   each leaf a seed of its own, which costs one hash per leaf more);
//! - **hbs-lms**: `hbs_lms::keygen` for the same parameter set (one level).
//!
//! `cargo run --release -p keyquorum-core --example lms_keygen -- --height 15 --w 4 [--subtrees 8] [--skip-hbs]`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "example binary: a failed unwrap aborts the measurement"
)]

use std::time::Instant;

use keyquorum_core::lms::ots::{leaf_public_key_hash, LeafSeed};
use keyquorum_core::lms::tree::Subtree;
use keyquorum_core::lms::{LmotsType, LmsType};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u32| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().unwrap())
    };
    let lms =
        LmsType::from_height(arg("--height", 15) as u8).expect("--height 5, 10, 15, 20 or 25");
    let ots = LmotsType::from_w(arg("--w", 4) as u8).expect("--w 1, 2, 4 or 8");
    let subtrees = arg("--subtrees", 8);
    assert!(
        subtrees.is_power_of_two() && subtrees <= lms.leaves(),
        "--subtrees must be a power of two no larger than the leaves"
    );
    let skip_hbs = args.iter().any(|a| a == "--skip-hbs");
    let id = [0x5au8; 16];
    let seed = LeafSeed::from_bytes([0xa5; 32]);
    let leaves = u64::from(lms.leaves());

    // The limit: bare compressions per second on this core (the best of
    // 1, 2 and 4 in flight), measured before and after our runs (the
    // machine drifts) and averaged.
    let bare_rate = || keyquorum_core::lms::compression_rate(4_000_000);
    let before = bare_rate();
    let per_leaf = ots.keygen_hashes() + 1;
    let compressions = leaves * per_leaf + (leaves - 1) * 2;

    // Ours: the whole tree.
    let t = Instant::now();
    let ks: Vec<_> = (0..lms.leaves())
        .map(|q| leaf_public_key_hash(ots, &id, q, &seed))
        .collect();
    let whole = Subtree::from_leaves(&id, lms, 0, &ks).unwrap();
    let ours = t.elapsed().as_secs_f64();

    // Ours: as aligned subtrees, then the tree above their roots.
    let t = Instant::now();
    let per = lms.leaves() / subtrees;
    let roots: Vec<_> = (0..subtrees)
        .map(|s| {
            let ks: Vec<_> = (s * per..(s + 1) * per)
                .map(|q| leaf_public_key_hash(ots, &id, q, &seed))
                .collect();
            Subtree::from_leaves(&id, lms, s * per, &ks).unwrap().root()
        })
        .collect();
    let upper = Subtree::from_nodes(&id, subtrees, roots).unwrap();
    let split = t.elapsed().as_secs_f64();
    assert_eq!(upper.root(), whole.root());
    let rate = (before + bare_rate()) / 2.0;
    let limit = compressions as f64 / rate;

    println!(
        "LMS {lms:?}/{ots:?}: {leaves} leaves, {compressions} SHA-256 compressions; bare rate {:.2} M/s on one core",
        rate / 1e6
    );
    println!("limit (compressions at the bare rate)   {limit:8.3} s");
    println!(
        "ours, whole tree                         {ours:8.3} s  = {:.2}x the limit",
        ours / limit
    );
    println!(
        "ours, {subtrees} subtrees + the tree above      {split:8.3} s  = {:.2}x the limit",
        split / limit
    );
    // Drift-proof: the leaves' keys (nearly all the work) in slices of 256
    // leaves, each timed right after the bare compressions it needs, so the
    // machine's drift (±30% on shared cores) hits both sides alike.
    let slice = 256u32.min(lms.leaves());
    let (mut ours_leaves, mut bare_leaves) = (0.0f64, 0.0f64);
    for first in (0..lms.leaves()).step_by(slice as usize) {
        let n = u64::from(slice) * ots.keygen_hashes();
        bare_leaves += n as f64 / keyquorum_core::lms::compression_rate(n / 3);
        let t = Instant::now();
        for q in first..first + slice {
            std::hint::black_box(leaf_public_key_hash(ots, &id, q, &seed));
        }
        ours_leaves += t.elapsed().as_secs_f64();
    }
    println!(
        "ours, leaves' keys slice by slice          {ours_leaves:8.3} s  = {:.3}x the bare compressions timed beside each slice ({bare_leaves:.3} s)",
        ours_leaves / bare_leaves
    );
    if !skip_hbs {
        use hbs_lms::{HssParameter, LmotsAlgorithm, LmsAlgorithm, Seed, Sha256_256};
        let lmots = match ots {
            LmotsType::W1 => LmotsAlgorithm::LmotsW1,
            LmotsType::W2 => LmotsAlgorithm::LmotsW2,
            LmotsType::W4 => LmotsAlgorithm::LmotsW4,
            LmotsType::W8 => LmotsAlgorithm::LmotsW8,
        };
        let lmsalg = match lms {
            LmsType::H5 => LmsAlgorithm::LmsH5,
            LmsType::H10 => LmsAlgorithm::LmsH10,
            LmsType::H15 => LmsAlgorithm::LmsH15,
            LmsType::H20 => LmsAlgorithm::LmsH20,
            LmsType::H25 => LmsAlgorithm::LmsH25,
        };
        let t = Instant::now();
        let seed = Seed::<Sha256_256>::from([0xa5u8; 32]);
        let (_sk, vk) =
            hbs_lms::keygen::<Sha256_256>(&[HssParameter::new(lmots, lmsalg)], &seed, None)
                .unwrap();
        let theirs = t.elapsed().as_secs_f64();
        std::hint::black_box(vk);
        println!(
            "hbs-lms 0.1.1 keygen                     {theirs:8.3} s  = {:.2}x the limit; ours is {:.2}x its time",
            theirs / limit,
            ours / theirs
        );
    }
}
