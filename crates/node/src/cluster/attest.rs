//! Software attestation (DESIGN.md §3.3): each node states, in its signed
//! boot statement, a measurement of the software it runs — the SHA-256 of
//! its executable and of its configuration's tunables — and an
//! encrypted-data session can require its members' binary measurement to
//! be in an allowed set.
//!
//! This is **software** attestation: the node's identity key signs what the
//! node says it runs. A compromised node can state any measurement; what
//! it buys is that honest nodes running another build (an old release, an
//! unreviewed binary) are refused, and that which build every member ran is
//! in the log. Hardware attestation (an SGX quote, an SEV-SNP report, a
//! Nitro attestation document), where a verifier checks a measurement
//! signed by the platform rather than by the node, plugs in at
//! [`Attestation`]: its `measure` produces the evidence and `verify`
//! checks it. We have no enclave hardware and claim no hardware protection.

use std::sync::OnceLock;

use keyquorum_wire::control::Measurement;
use keyquorum_wire::Hex32;
use sha2::{Digest, Sha256};

use crate::config::NodeConfig;

/// Where a measurement comes from and how another node checks one.
pub trait Attestation {
    /// This node's measurement.
    fn measure(&self, config: &NodeConfig) -> Measurement;
    /// Whether a measurement another node stated is acceptable evidence
    /// of what it runs (software attestation: any well-formed one; a
    /// hardware verifier would check the platform's signature here).
    fn verify(&self, measurement: &Measurement) -> bool;
}

/// Software attestation: the executable's and the configuration's hashes,
/// stated by the node itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftwareAttestation;

impl Attestation for SoftwareAttestation {
    fn measure(&self, config: &NodeConfig) -> Measurement {
        Measurement {
            binary: binary_hash(),
            config: config_hash(config),
        }
    }

    fn verify(&self, _measurement: &Measurement) -> bool {
        true
    }
}

/// SHA-256 of this process's executable (once per process: every node of a
/// local cluster runs the same one). All zero if it cannot be read.
fn binary_hash() -> Hex32 {
    static HASH: OnceLock<Hex32> = OnceLock::new();
    *HASH.get_or_init(|| {
        let read = std::env::current_exe().and_then(|p| {
            let mut f = std::fs::File::open(p)?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(Hex32(h.finalize().into()))
        });
        read.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read this executable to measure it");
            Hex32([0; 32])
        })
    })
}

/// SHA-256 of the configuration's tunables (what every member of a
/// deployment shares): not the node's id, addresses, directory or peers.
fn config_hash(config: &NodeConfig) -> Hex32 {
    let tunables = NodeConfig {
        id: keyquorum_wire::NodeId::new(1).unwrap_or(config.id),
        data_dir: Default::default(),
        listen: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
        advertise: None,
        tls_names: Vec::new(),
        peers: Vec::new(),
        smtp: None,
        ..config.clone()
    };
    let mut h = Sha256::new();
    h.update(b"keyquorum-config-v1");
    h.update(serde_json::to_vec(&tunables).unwrap_or_default());
    Hex32(h.finalize().into())
}
