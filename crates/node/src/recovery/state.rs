//! The guardians' part of the replicated state machine. OPRF keys are
//! ordinary key records (`oprf.NAME`, suite ristretto255); what is theirs
//! is the apply rule that lets `POST /v1/oprf/keys` create one
//! (`crate::cluster::machine::authority`).

/// Apply rules from which OPRF keys exist
/// (`keyquorum_wire::control::APPLY_RULES`).
pub const OPRF_RULES: u16 = 8;
