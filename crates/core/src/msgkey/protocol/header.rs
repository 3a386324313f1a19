//! The message header and its routing part: their byte encoding, which
//! the sender signs and every coordinator and the receiver parse.

use super::*;

/// The header: everything the coordinators and the receiver check, bound
/// to the payload as AEAD associated data and signed by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Everything but the commitment.
    pub routing: Routing,
    /// Feldman commitment to the base secret's polynomial.
    pub commitment: Commitment<Grp>,
}

impl Header {
    /// Canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let commitment = self.commitment.to_bytes();
        let mut b =
            Vec::with_capacity(200 + 8 * self.routing.coordinators.len() + commitment.len());
        b.push(VERSION);
        b.push(match self.routing.mode {
            Mode::VerifyInTheExponent => 0,
            Mode::CoordinatorReconstructs => 1,
        });
        b.extend_from_slice(&self.routing.time_ms.to_be_bytes());
        b.extend_from_slice(&self.routing.sender);
        b.extend_from_slice(&self.routing.receiver);
        b.extend_from_slice(&self.routing.prekey);
        b.extend_from_slice(&self.routing.nonce);
        b.extend_from_slice(&self.routing.id);
        b.push(self.routing.coordinators.len() as u8);
        for c in &self.routing.coordinators {
            b.extend_from_slice(&c.to_be_bytes());
        }
        b.extend_from_slice(&commitment);
        b
    }

    /// Decode untrusted bytes (exact, canonical).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MsgError> {
        let (r, rest) = Routing::prefix(bytes)?;
        let commitment = Commitment::<Grp>::from_bytes(rest)
            .map_err(|_| MsgError::Invalid("malformed header"))?;
        Ok(Self {
            routing: r,
            commitment,
        })
    }

    pub(super) fn layout(&self) -> Result<Layout, MsgError> {
        let m = u16::try_from(self.routing.coordinators.len())
            .map_err(|_| MsgError::Invalid("too many coordinators"))?;
        Layout::new(m, self.routing.mode)
    }

    /// The check every party makes: the identifier routes to exactly these
    /// coordinators over `nodes`.
    pub fn check_route(&self, nodes: &[Node]) -> Result<(), MsgError> {
        let chosen = route::coordinators(
            &self.routing.id,
            &members(nodes),
            self.routing.coordinators.len(),
        )?;
        if chosen != self.routing.coordinators {
            return Err(MsgError::WrongCoordinator);
        }
        Ok(())
    }
}

/// A header's fields but the commitment, read without decoding the
/// commitment's points: what an entry node needs to route a message and file
/// it (the coordinators decode and check the whole header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// Coordinator mode.
    pub mode: Mode,
    /// Sender's send time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Sender identity.
    pub sender: [u8; 32],
    /// Receiver identity.
    pub receiver: [u8; 32],
    /// The receiver prekey the receiver's shares are sealed to.
    pub prekey: [u8; 32],
    /// Random nonce in the identifier.
    pub nonce: [u8; 16],
    /// The message identifier.
    pub id: [u8; 32],
    /// The chosen coordinators, highest rendezvous weight first.
    pub coordinators: Vec<u64>,
}

impl Routing {
    /// Read the fields of an encoded header before its commitment.
    pub fn from_header(bytes: &[u8]) -> Result<Self, MsgError> {
        Self::prefix(bytes).map(|(r, _)| r)
    }

    fn prefix(bytes: &[u8]) -> Result<(Self, &[u8]), MsgError> {
        let bad = MsgError::Invalid("malformed header");
        let mut r = Cursor(bytes);
        if r.take::<1>().ok_or(bad.clone())? != [VERSION] {
            return Err(MsgError::Invalid("unsupported header version"));
        }
        let mode = match r.take::<1>().ok_or(bad.clone())? {
            [0] => Mode::VerifyInTheExponent,
            [1] => Mode::CoordinatorReconstructs,
            _ => return Err(bad),
        };
        let time_ms = u64::from_be_bytes(r.take().ok_or(bad.clone())?);
        let sender = r.take().ok_or(bad.clone())?;
        let receiver = r.take().ok_or(bad.clone())?;
        let prekey = r.take().ok_or(bad.clone())?;
        let nonce = r.take().ok_or(bad.clone())?;
        let id = r.take().ok_or(bad.clone())?;
        let [m] = r.take::<1>().ok_or(bad.clone())?;
        let mut coordinators = Vec::with_capacity(usize::from(m));
        for _ in 0..m {
            coordinators.push(u64::from_be_bytes(r.take().ok_or(bad.clone())?));
        }
        Ok((
            Self {
                mode,
                time_ms,
                sender,
                receiver,
                prekey,
                nonce,
                id,
                coordinators,
            },
            r.0,
        ))
    }
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}
