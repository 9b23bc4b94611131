//! Tamper evidence over the log: per-aggregate hash chains (every commit is
//! sealed by [`codec::Commit::seal`]), signed Merkle checkpoints on their
//! own subject, and the [`Verifier`] that checks both while streaming.
//!
//! What each check catches, for an alteration anywhere before the last
//! checkpoint: a changed commit breaks its own hash; a removed, inserted or
//! moved commit breaks its aggregate's chain, or (for an aggregate's last
//! commit, or commits of different aggregates swapped) the Merkle root of the
//! checkpoint that covers it; a removed or forged checkpoint breaks the
//! contiguous ranges or the signature. Messages after the last checkpoint are
//! protected by the chains alone: removing the log's tail is only visible
//! against a checkpoint recorded elsewhere (`paved audit verify` prints the
//! last one's sequence and root for that).

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ed25519_dalek::{Signer, Verifier as _};
use paved_domain::ops::{Quarantine, Statement};
use paved_proto::v1 as pb;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::codec::{self, SealError};
use crate::log::{EventLog, LogError};

/// The subject of the checkpoints of the log whose commits are under
/// `<prefix>.>`: `<prefix>-audit.checkpoint`, in the same stream.
pub fn checkpoint_subject(prefix: &str) -> String {
    format!("{prefix}-audit.checkpoint")
}

const CHECKPOINT_SCHEMA: u32 = 1;

/// A Merkle leaf: SHA-256 of one stored message's bytes.
pub fn leaf(payload: &[u8]) -> [u8; 32] {
    Sha256::digest(payload).into()
}

/// The RFC 6962 Merkle tree hash over `leaves`, in order.
pub fn merkle_root(leaves: impl IntoIterator<Item = [u8; 32]>) -> [u8; 32] {
    let mut tree = MemoryBackedTree::<Sha256, [u8; 32]>::new();
    for l in leaves {
        tree.push(l);
    }
    (*tree.root().as_bytes()).into()
}

/// Which key signed: hex of the first 8 bytes of SHA-256(public key).
pub fn key_id(key: &ed25519_dalek::VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Why a configured key was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The Ed25519 key checkpoints are signed with.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("id", &self.id).finish()
    }
}

impl SigningKey {
    /// From the 32-byte secret seed in hex (64 characters).
    pub fn from_hex(seed: &str) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = hex::decode(seed.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError("a signing key is 32 bytes in hex (64 characters)".into()))?;
        Ok(Self::from_seed(bytes))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    pub fn seed_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    pub fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs a quarantine statement: the quarantine record of it.
    pub fn quarantine(&self, statement: Statement) -> Quarantine {
        let signed = codec::statement_to_proto(&statement).encode_to_vec();
        Quarantine {
            statement,
            key_id: self.id.clone(),
            signature: self.key.sign(&signed).to_bytes().to_vec(),
        }
    }

    /// A signed checkpoint over `from..=to` with `root`, encoded.
    pub fn checkpoint(&self, from: u64, to: u64, root: [u8; 32], at: DateTime<Utc>) -> Vec<u8> {
        let mut cp = pb::AuditCheckpoint {
            schema_version: CHECKPOINT_SCHEMA,
            from_sequence: from,
            to_sequence: to,
            root: root.to_vec(),
            signed_at: Some(codec::timestamp(at)),
            key_id: self.id.clone(),
            signature: Vec::new(),
        };
        cp.signature = self.key.sign(&cp.encode_to_vec()).to_bytes().to_vec();
        cp.encode_to_vec()
    }
}

/// The public keys whose checkpoints are trusted, by key id. Keep retired
/// keys here after a rotation: old checkpoints keep verifying with them.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys(HashMap<String, ed25519_dalek::VerifyingKey>);

impl TrustedKeys {
    /// Adds a public key given in hex (64 characters).
    pub fn add_hex(&mut self, public: &str) -> Result<(), KeyError> {
        let bytes: [u8; 32] = hex::decode(public.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyError(format!("{public:?} is not a 32-byte public key in hex")))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|e| KeyError(format!("{public:?} is not an Ed25519 public key: {e}")))?;
        self.add(key);
        Ok(())
    }

    pub fn add(&mut self, key: ed25519_dalek::VerifyingKey) {
        self.0.insert(key_id(&key), key);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Is the quarantine signed by a trusted key? The signature is over the
    /// statement's encoding (prost's, canonical for this message).
    pub fn verify_quarantine(&self, q: &Quarantine) -> Result<(), String> {
        let key = self.0.get(&q.key_id).ok_or_else(|| {
            format!(
                "the quarantine is signed by key {:?}, which is not trusted",
                q.key_id
            )
        })?;
        let signature = ed25519_dalek::Signature::from_slice(&q.signature)
            .map_err(|_| "the quarantine's signature is malformed".to_owned())?;
        let signed = codec::statement_to_proto(&q.statement).encode_to_vec();
        key.verify(&signed, &signature)
            .map_err(|_| "the quarantine's signature does not verify".to_owned())
    }

    /// Checks a stored checkpoint's signature over its own bytes.
    fn check(&self, payload: &[u8]) -> Result<pb::AuditCheckpoint, String> {
        // field 15, length-delimited, 64 bytes: the last field prost writes.
        const SIGNATURE_TAG: [u8; 2] = [15 << 3 | 2, 64];
        let cp = pb::AuditCheckpoint::decode(payload)
            .map_err(|e| format!("the checkpoint does not decode: {e}"))?;
        if cp.schema_version != CHECKPOINT_SCHEMA {
            return Err(format!("unknown checkpoint schema {}", cp.schema_version));
        }
        let key = self.0.get(&cp.key_id).ok_or_else(|| {
            format!(
                "the checkpoint is signed by key {:?}, which is not trusted",
                cp.key_id
            )
        })?;
        let signature = ed25519_dalek::Signature::from_slice(&cp.signature)
            .map_err(|_| "the checkpoint's signature is malformed".to_owned())?;
        let signed = payload.len().checked_sub(66).map(|n| payload.split_at(n));
        match signed {
            Some((body, trailer))
                if trailer[..2] == SIGNATURE_TAG && trailer[2..] == cp.signature[..] =>
            {
                key.verify(body, &signature)
                    .map_err(|_| "the checkpoint's signature does not verify".to_owned())?;
                Ok(cp)
            }
            _ => Err("the checkpoint's bytes are not the ones signed".to_owned()),
        }
    }
}

/// What is wrong at a sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// A message's content does not match its hash or signature.
    Modified,
    /// A message the chain or a checkpoint expects is not there.
    Missing,
    /// A message is there that the chain or a checkpoint does not expect.
    Inserted,
    /// Messages are out of the order they were written in.
    Reordered,
    /// A checkpointed range does not match its signed root: one of its
    /// messages was changed, removed, inserted or moved.
    RangeAltered,
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Modified => "modified",
            Self::Missing => "missing",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::RangeAltered => "range altered",
        })
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The first bad stream sequence (for a range, its first sequence).
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub sequence: u64,
    pub tamper: Tamper,
    pub detail: String,
}

/// What a verification saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub first_sequence: u64,
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub last_sequence: u64,
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub messages: u64,
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub commits: u64,
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub checkpoints: u64,
    /// Every message up to here is covered by a verified checkpoint.
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub covered_to: u64,
    /// The last checkpoint: its sequence and root (hex), to record elsewhere.
    pub last_checkpoint: Option<LastCheckpoint>,
    /// The first problem, if any.
    pub finding: Option<Finding>,
    /// How many problems in all (later ones are often consequences).
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub problems: u64,
    /// Messages set aside by a signed quarantine record: not commits, not
    /// problems (their bytes are still covered by the checkpoints).
    pub quarantined: Vec<QuarantineNote>,
}

/// The last checkpoint a verification saw: record it elsewhere, and a
/// later verification can prove the log's tail was not cut.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastCheckpoint {
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub sequence: u64,
    /// Its Merkle root, hex.
    pub root: String,
}

/// A quarantined message, as `audit verify` reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantineNote {
    #[serde(serialize_with = "paved_proto::json::u64_string")]
    pub sequence: u64,
    pub reason: String,
    pub key_id: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.finding.is_none()
    }
}

/// Checks a log message by message, in stream order.
pub struct Verifier {
    prefix: String,
    checkpoints: String,
    keys: TrustedKeys,
    start: u64,
    /// The last commit hash of every aggregate (by subject).
    heads: HashMap<String, [u8; 32]>,
    /// Sequence of every commit hash seen, by its first 8 bytes (used only
    /// to name what a broken link points at; `None` in a lean pass, which
    /// holds nothing per commit and only says whether a link broke).
    seen: Option<HashMap<u64, u64>>,
    /// Leaves since the last checkpointed range (when the ranges are not
    /// known before the scan).
    leaves: VecDeque<(u64, [u8; 32])>,
    /// The checkpoints' ranges, read before the scan (see
    /// [`Self::with_ranges`]): each range's root is folded as its last
    /// message passes, so no more than one range's leaves are held.
    planned: Option<Planned>,
    next_from: Option<u64>,
    /// A first finding that says "missing" until the commit it chains to
    /// shows up later ("reordered").
    awaiting: Option<[u8; 32]>,
    /// The commit of the first finding: seen again later, it was a copy.
    first_hash: Option<([u8; 32], u64)>,
    /// Signed quarantine records, by the sequence they set aside.
    quarantines: HashMap<u64, Quarantine>,
    report: Report,
}

/// Ranges known before the scan, and the roots of those that have passed.
#[derive(Default)]
struct Planned {
    ranges: VecDeque<(u64, u64)>,
    /// Leaves of the front range so far.
    current: Vec<[u8; 32]>,
    /// Roots of passed ranges (`None`: a message of it was missing).
    roots: HashMap<(u64, u64), Option<[u8; 32]>>,
}

impl Planned {
    fn observe(&mut self, sequence: u64, leaf: [u8; 32]) {
        // Ranges that ended without their last message.
        while let Some(&(from, to)) = self.ranges.front() {
            if sequence <= to {
                break;
            }
            self.close(from, to);
        }
        let Some(&(from, to)) = self.ranges.front() else {
            return;
        };
        if sequence >= from {
            self.current.push(leaf);
            if sequence == to {
                self.close(from, to);
            }
        }
    }

    fn close(&mut self, from: u64, to: u64) {
        let root = complete_root(from, to, std::mem::take(&mut self.current));
        self.roots.insert((from, to), root);
        self.ranges.pop_front();
    }
}

/// The Merkle root of `from..=to` given the leaves of the messages seen in
/// it, in order; `None` unless every one of them was seen.
fn complete_root(from: u64, to: u64, leaves: Vec<[u8; 32]>) -> Option<[u8; 32]> {
    (leaves.len() as u64 == to - from + 1).then(|| merkle_root(leaves))
}

fn short(h: &[u8]) -> u64 {
    u64::from_be_bytes(h[..8].try_into().expect("32-byte hash"))
}

impl Verifier {
    /// Verifies a log whose subjects start with `prefix.`, from `start`
    /// (1 for the whole log; later starts trust the first link they see).
    pub fn new(prefix: &str, keys: TrustedKeys, start: u64) -> Self {
        Self {
            prefix: format!("{prefix}."),
            checkpoints: checkpoint_subject(prefix),
            keys,
            start: start.max(1),
            heads: HashMap::new(),
            seen: Some(HashMap::new()),
            leaves: VecDeque::new(),
            planned: None,
            next_from: (start <= 1).then_some(1),
            awaiting: None,
            first_hash: None,
            quarantines: HashMap::new(),
            report: Report {
                first_sequence: start.max(1),
                ..Report::default()
            },
        }
    }

    /// Keeps nothing per commit: a broken link is still found (and counted),
    /// but not named (what it copies or points at). [`verify_log`] verifies
    /// lean and, only when something is found, again in full to name it.
    pub fn lean(mut self) -> Self {
        self.seen = None;
        self
    }

    /// The ranges of the log's checkpoints, in stream order, read before
    /// the scan: each range's root is then folded as its last message
    /// passes instead of holding every leaf until its checkpoint is read.
    /// Ignored unless they follow each other without gap or overlap (what
    /// a log that is not can still be checked the long way).
    pub fn with_ranges(mut self, ranges: Vec<(u64, u64)>) -> Self {
        let back_to_back = ranges.iter().all(|(from, to)| *from >= 1 && from <= to)
            && ranges.windows(2).all(|w| w[1].0 == w[0].1 + 1);
        if back_to_back {
            self.planned = Some(Planned {
                ranges: ranges.into(),
                ..Planned::default()
            });
        }
        self
    }

    /// Honours these quarantine records (already checked against the keys):
    /// the messages they name, with exactly those bytes, are set aside.
    pub fn with_quarantines(mut self, quarantines: HashMap<u64, Quarantine>) -> Self {
        self.quarantines = quarantines;
        self
    }

    fn found(&mut self, sequence: u64, tamper: Tamper, detail: String) {
        self.report.problems += 1;
        if self.report.finding.is_none() {
            self.report.finding = Some(Finding {
                sequence,
                tamper,
                detail,
            });
        }
    }

    /// Checks the message stored at `sequence`.
    pub fn observe(&mut self, sequence: u64, subject: &str, payload: &[u8]) {
        let expected = self.report.last_sequence.max(self.start - 1) + 1;
        if sequence != expected && self.report.messages > 0 {
            self.found(
                expected,
                Tamper::Missing,
                format!("sequences {expected}..={} are absent", sequence - 1),
            );
        }
        self.report.messages += 1;
        self.report.last_sequence = sequence;
        match self.planned.as_mut() {
            Some(planned) => planned.observe(sequence, leaf(payload)),
            None => self.leaves.push_back((sequence, leaf(payload))),
        }
        if subject == self.checkpoints {
            return self.checkpoint(sequence, payload);
        }
        match subject.strip_prefix(&self.prefix) {
            Some(rel) => self.commit(sequence, rel, payload),
            None => self.found(
                sequence,
                Tamper::Inserted,
                format!("subject {subject:?} is not under {:?}", self.prefix),
            ),
        }
    }

    fn commit(&mut self, sequence: u64, rel: &str, payload: &[u8]) {
        if let Some(q) = self.quarantines.get(&sequence)
            && crate::quarantine::holds_for(q, payload)
        {
            self.report.quarantined.push(QuarantineNote {
                sequence,
                reason: q.statement.reason.clone(),
                key_id: q.key_id.clone(),
            });
            return;
        }
        self.report.commits += 1;
        let seal = match codec::check_seal(payload) {
            Ok(seal) => seal,
            Err(e) => {
                let detail = match e {
                    SealError::Unsealed => "the commit carries no hash".to_owned(),
                    e => e.to_string(),
                };
                return self.found(sequence, Tamper::Modified, detail);
            }
        };
        if seal.aggregate != rel {
            self.found(
                sequence,
                Tamper::Modified,
                format!("a commit of {} stored under {rel}", seal.aggregate),
            );
        }
        let hash: [u8; 32] = seal.hash[..].try_into().expect("checked length");
        if self.awaiting == Some(hash) {
            self.awaiting = None;
            if let Some(f) = self.report.finding.as_mut() {
                f.tamper = Tamper::Reordered;
                f.detail =
                    format!("the commit it chains to comes after it, at sequence {sequence}");
            }
        }
        if let Some((first, at)) = self.first_hash
            && first == hash
        {
            self.first_hash = None;
            if let Some(f) = self.report.finding.as_mut() {
                f.tamper = Tamper::Inserted;
                f.detail = format!("a copy of the commit at sequence {sequence}, placed before it");
                f.sequence = at;
            }
        }
        let head = self.heads.get(rel).copied();
        let linked = match head {
            Some(h) => seal.prev_hash == h,
            // Verification from a later start trusts an aggregate's first link.
            None => seal.prev_hash.is_empty() || self.start > 1,
        };
        if !linked {
            let seen_at = |h: &[u8]| self.seen.as_ref()?.get(&short(h)).copied();
            let copy_of = seen_at(&hash);
            let points_at = (!seal.prev_hash.is_empty())
                .then(|| seen_at(&seal.prev_hash))
                .flatten();
            let (tamper, detail) = if let Some(original) = copy_of {
                (
                    Tamper::Inserted,
                    format!("a copy of the commit at sequence {original}"),
                )
            } else if seal.prev_hash.is_empty() {
                (
                    Tamper::Inserted,
                    format!("starts a new chain for {rel}, which already has commits"),
                )
            } else if let Some(earlier) = points_at {
                (
                    Tamper::Inserted,
                    format!(
                        "it chains to sequence {earlier}, but other commits of {rel} were placed in between"
                    ),
                )
            } else {
                if self.report.finding.is_none() {
                    self.awaiting = seal.prev_hash[..].try_into().ok();
                    self.first_hash = Some((hash, sequence));
                }
                (
                    Tamper::Missing,
                    format!("the commit of {rel} it chains to is not in the log before it"),
                )
            };
            self.found(sequence, tamper, detail);
        }
        self.heads.insert(rel.to_owned(), hash);
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(short(&hash), sequence);
        }
    }

    fn checkpoint(&mut self, sequence: u64, payload: &[u8]) {
        self.report.checkpoints += 1;
        let cp = match self.keys.check(payload) {
            Ok(cp) => cp,
            Err(detail) => return self.found(sequence, Tamper::Modified, detail),
        };
        let (from, to) = (cp.from_sequence, cp.to_sequence);
        if from == 0 || to < from || to >= sequence {
            return self.found(
                sequence.min(from.max(1)),
                Tamper::RangeAltered,
                format!(
                    "the checkpoint covers {from}..={to} but is stored at {sequence}: \
                     messages before it were removed, or it was moved"
                ),
            );
        }
        match self.next_from {
            Some(next) if from > next => self.found(
                next,
                Tamper::Missing,
                format!(
                    "sequences {next}..{from} are in no checkpoint: a checkpoint is missing before {sequence}"
                ),
            ),
            Some(next) if from < next => self.found(
                sequence,
                Tamper::Inserted,
                format!(
                    "the checkpoint covers {from}..={to}, overlapping the previous one (up to {})",
                    next - 1
                ),
            ),
            _ => {}
        }
        // The range's root, if all of its messages are there (a range that
        // began before a later start cannot be checked).
        let root = match self.planned.as_mut() {
            Some(planned) => planned.roots.remove(&(from, to)).flatten(),
            None => {
                let mut range = Vec::new();
                while let Some(&(s, l)) = self.leaves.front() {
                    if s > to {
                        break;
                    }
                    self.leaves.pop_front();
                    if s >= from {
                        range.push(l);
                    }
                }
                complete_root(from, to, range)
            }
        };
        if from >= self.start {
            if root.is_none_or(|root| root[..] != cp.root[..]) {
                self.found(
                    from,
                    Tamper::RangeAltered,
                    format!(
                        "sequences {from}..={to} do not match the root signed at {sequence} \
                         (a message in the range was changed, removed, inserted or moved)"
                    ),
                );
            } else if self.report.problems == 0 {
                self.report.covered_to = to;
            }
        }
        self.next_from = Some(to + 1);
        self.report.last_checkpoint = Some(LastCheckpoint {
            sequence,
            root: hex::encode(&cp.root),
        });
    }

    pub fn finish(self) -> Report {
        self.report
    }
}

/// Streams the log from `from` to its current end through `verifier`,
/// calling `progress(sequence, last)` now and then.
pub async fn verify_log(
    log: &EventLog,
    keys: TrustedKeys,
    from: u64,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, LogError> {
    let quarantines = crate::quarantine::all(log, &keys).await?;
    let last = log.last_sequence().await?;
    // The checkpoints' ranges first (one message per 100,000): each range's
    // root is then folded as it passes (see `Verifier::with_ranges`).
    let ranges: Option<Vec<(u64, u64)>> = log
        .read_subject(&log.checkpoint_subject(), from.max(1), last)
        .await?
        .iter()
        // One that does not decode: the scan will say what is wrong with
        // it; check the long way.
        .map(|m| {
            decode_checkpoint(&m.payload)
                .ok()
                .map(|cp| (cp.from_sequence, cp.to_sequence))
        })
        .collect();
    let verifier = || {
        let v = Verifier::new(&log.config().subject_prefix, keys.clone(), from)
            .with_quarantines(quarantines.clone());
        match &ranges {
            Some(ranges) => v.with_ranges(ranges.clone()),
            None => v,
        }
    };
    // A lean pass first (nothing held per commit); a log where it finds
    // something is read again in full, so the report names what it found
    // exactly as a full pass does.
    let report = scan_into(log, verifier().lean(), from, last, &mut progress).await?;
    if report.problems == 0 {
        return Ok(report);
    }
    scan_into(log, verifier(), from, last, &mut progress).await
}

/// Streams the log's `from..=last` through `verifier`.
async fn scan_into(
    log: &EventLog,
    mut verifier: Verifier,
    from: u64,
    last: u64,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Report, LogError> {
    if last < from.max(1) {
        return Ok(verifier.finish());
    }
    log.scan(from.max(1), last, |sequence, subject, payload| {
        verifier.observe(sequence, subject, payload);
        if sequence % 10_000 == 0 {
            progress(sequence, last);
        }
    })
    .await?;
    progress(last, last);
    Ok(verifier.finish())
}

/// The Merkle root over the messages `from..=to`, read from the stream.
pub async fn range_root(log: &EventLog, from: u64, to: u64) -> Result<[u8; 32], LogError> {
    let mut leaves = Vec::with_capacity((to - from + 1) as usize);
    log.scan(from, to, |_, _, payload| leaves.push(leaf(payload)))
        .await?;
    if leaves.len() as u64 != to - from + 1 {
        return Err(LogError::Unavailable(format!(
            "read {} messages of {from}..={to}",
            leaves.len()
        )));
    }
    Ok(merkle_root(leaves))
}

/// Decodes a stored checkpoint without checking its signature.
pub fn decode_checkpoint(payload: &[u8]) -> Result<pb::AuditCheckpoint, prost::DecodeError> {
    pb::AuditCheckpoint::decode(payload)
}
