//! The survey secret and what is derived from it: respondents' pseudonyms
//! and the keys that seal survey responses in the log.
//!
//! - pseudonym = HMAC-SHA256(secret, "pseudonym", survey, principal), 16 bytes
//!   in hex: one answer per person per survey, unlinkable across surveys and
//!   to the person without the secret.
//! - the survey's content key = HMAC-SHA256(secret, "survey-content", survey);
//!   a response's team and answers ([`pb::SurveyResponseContent`]) are sealed
//!   with AES-256-GCM-SIV (RFC 8452) under it. The nonce is derived from the
//!   response's command id, so a retried request seals to the same bytes (and
//!   the same fingerprint); GCM-SIV stays safe when a nonce repeats (it then
//!   only shows that two plaintexts are equal).
//!
//! Whoever holds the secret can read every response and link pseudonyms to
//! people: production keeps it outside the database (`PAVED_SURVEY_SECRET`
//! or `PAVED_SURVEY_SECRET_FILE`). Destroying it shreds every sealed
//! response in the log (crypto-shredding); the read models then can no
//! longer be rebuilt for surveys.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use hmac::{Hmac, Mac};
use paved_domain::Name;
use paved_domain::surveys::Answers;
use paved_proto::v1 as pb;
use prost::Message;
use sha2::Sha256;

const NONCE: usize = 12;

/// The survey secret. Cheap to clone.
#[derive(Clone)]
pub struct SurveyKeys {
    secret: std::sync::Arc<Vec<u8>>,
}

/// Sealed bytes that do not open: another secret, or altered bytes.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "the sealed response does not open with this survey secret (another secret, or altered)"
    )]
    Key,
    #[error("the sealed response does not decode: {0}")]
    Decode(String),
}

impl std::fmt::Debug for SurveyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SurveyKeys(..)")
    }
}

impl SurveyKeys {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: std::sync::Arc::new(secret.into()),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC takes a key of any length: `new_from_slice` cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).expect("any key length");
        for p in parts {
            mac.update(p);
            mac.update(&[0]);
        }
        mac.finalize().into_bytes().into()
    }

    /// HMAC of `parts` under the secret, 16 bytes in hex.
    pub fn keyed(&self, parts: &[&str]) -> String {
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        hex::encode(&self.mac(&parts)[..16])
    }

    /// The respondent's pseudonym for one survey.
    pub fn pseudonym(&self, survey: &str, principal: &str) -> String {
        self.keyed(&["pseudonym", survey, principal])
    }

    fn cipher(&self, survey: &str) -> Aes256GcmSiv {
        let key = self.mac(&[b"survey-content", survey.as_bytes()]);
        Aes256GcmSiv::new(&key.into())
    }

    /// Seals a response's team and answers for the log. The survey id is
    /// bound in as associated data: the bytes open under no other survey.
    pub fn seal(
        &self,
        survey: &str,
        command_id: &str,
        team: Option<&Name>,
        answers: &Answers,
    ) -> Vec<u8> {
        let content = pb::SurveyResponseContent {
            team: team.map(Name::to_string).unwrap_or_default(),
            nps: u32::from(answers.nps),
            comment: answers.comment.clone(),
            scales: answers.scales.iter().map(|s| u32::from(*s)).collect(),
        };
        let derived = self.mac(&[b"survey-nonce", survey.as_bytes(), command_id.as_bytes()]);
        let nonce: [u8; NONCE] = derived[..NONCE].try_into().expect("32 bytes hold 12");
        let nonce = Nonce::from(nonce);
        let sealed = self
            .cipher(survey)
            .encrypt(
                &nonce,
                Payload {
                    msg: &content.encode_to_vec(),
                    aad: survey.as_bytes(),
                },
            )
            // Encryption fails only for inputs over 2^36 bytes.
            .expect("a survey response is small");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`Self::seal`] sealed: the team and the answers.
    pub fn open(&self, survey: &str, sealed: &[u8]) -> Result<(Option<Name>, Answers), OpenError> {
        if sealed.len() < NONCE {
            return Err(OpenError::Key);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| OpenError::Key)?;
        let plain = self
            .cipher(survey)
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: survey.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Key)?;
        let c = pb::SurveyResponseContent::decode(plain.as_slice())
            .map_err(|e| OpenError::Decode(e.to_string()))?;
        let team = match c.team.as_str() {
            "" => None,
            t => Some(Name::parse(t).map_err(|e| OpenError::Decode(e.to_string()))?),
        };
        let answers = crate::codec::answers_from_proto(c.nps, &c.comment, &c.scales)
            .map_err(|e| OpenError::Decode(e.to_string()))?;
        Ok((team, answers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Answers {
        Answers {
            nps: 9,
            comment: "previews are great".into(),
            scales: vec![4, 5],
        }
    }

    #[test]
    fn a_sealed_response_opens_with_its_survey_and_secret_only() {
        let keys = SurveyKeys::new(b"secret".to_vec());
        let team = Name::parse("payments").unwrap();
        let sealed = keys.seal("q4", "response-1", Some(&team), &answers());
        assert!(!String::from_utf8_lossy(&sealed).contains("previews"));
        let (t, a) = keys.open("q4", &sealed).unwrap();
        assert_eq!((t, a), (Some(team.clone()), answers()));
        // The same request seals to the same bytes; another one does not.
        assert_eq!(
            sealed,
            keys.seal("q4", "response-1", Some(&team), &answers())
        );
        assert_ne!(
            sealed,
            keys.seal("q4", "response-2", Some(&team), &answers())
        );
        // Another survey, another secret, or a flipped bit: nothing opens.
        assert!(matches!(keys.open("q3", &sealed), Err(OpenError::Key)));
        assert!(matches!(
            SurveyKeys::new(b"other".to_vec()).open("q4", &sealed),
            Err(OpenError::Key)
        ));
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(matches!(keys.open("q4", &bad), Err(OpenError::Key)));
    }
}
