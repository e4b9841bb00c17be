//! Python 3.12's mutual authkey handshake (`multiprocessing.connection`'s
//! `deliver_challenge` / `answer_challenge`), byte for byte.
//!
//! ```text
//!  server (Listener)                               client (Client)
//!  "#CHALLENGE#{sha256}" + 40 random bytes  --->
//!                                           <---  "{sha256}" + HMAC-SHA256(key, "{sha256}" + random)
//!  "#WELCOME#" or "#FAILURE#"               --->
//!                    ... then the same with the roles swapped ...
//! ```
//! Each message is one frame: a 4-byte big-endian signed length, then the
//! bytes; the handshake refuses frames over 256 bytes, as Python does. The
//! MAC covers the whole challenge, digest prefix included. Comparison is
//! constant-time (`hmac`'s `verify_slice`).
//!
//! Python 3.11 and older send a 20-byte challenge without a prefix and
//! answer with a bare 16-byte HMAC-MD5: those are recognised (by length, as
//! 3.12 does) and refused with [`AuthenticationError::LegacyMd5`].

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::AuthenticationError;

/// Prefix of a challenge (`_CHALLENGE`).
pub const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// Answer to a correct response (`_WELCOME`).
pub const WELCOME: &[u8] = b"#WELCOME#";
/// Answer to a wrong response (`_FAILURE`).
pub const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a challenge (`MESSAGE_LENGTH`).
pub const MESSAGE_LENGTH: usize = 40;
/// The digest prefix we send.
pub const SHA256_PREFIX: &[u8] = b"{sha256}";
/// Largest handshake frame accepted (Python's `recv_bytes(256)`).
pub const MAX_HANDSHAKE_FRAME: usize = 256;
/// Python's allowed digests (`_ALLOWED_DIGESTS`), to name what we refuse.
const ALLOWED: [&[u8]; 5] = [b"md5", b"sha256", b"sha384", b"sha3_256", b"sha3_384"];
/// `_MAX_DIGEST_LEN`: the longest allowed digest name.
const MAX_DIGEST_LEN: usize = 8;
/// `_LEGACY_LENGTHS`: a bare MD5 challenge (20) or response (16).
const LEGACY_LENGTHS: [usize; 2] = [20, 16];

/// The challenge message for `random` (`{sha256}` + random), the part after
/// [`CHALLENGE`] that the MAC covers.
pub fn challenge_message(random: &[u8; MESSAGE_LENGTH]) -> Vec<u8> {
    [SHA256_PREFIX, random.as_slice()].concat()
}

/// Splits `message` into its digest name and payload, as Python's
/// `_get_digest_name_and_payload`; only `sha256` is accepted.
fn digest_and_payload(message: &[u8]) -> Result<&[u8], AuthenticationError> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Err(AuthenticationError::LegacyMd5);
    }
    if message.first() == Some(&b'{') {
        let window = message
            .get(1..message.len().min(MAX_DIGEST_LEN + 2))
            .unwrap_or(&[]);
        if let Some(end) = window.iter().position(|&b| b == b'}') {
            let name = window.get(..end).unwrap_or(&[]);
            let payload = message.get(end + 2..).unwrap_or(&[]);
            if name == b"sha256" {
                return Ok(payload);
            }
            if ALLOWED.contains(&name) {
                return Err(AuthenticationError::UnsupportedDigest(
                    String::from_utf8_lossy(name).into_owned(),
                ));
            }
        }
    }
    Err(AuthenticationError::Protocol(
        "unsupported message length, missing digest prefix, or unsupported digest",
    ))
}

fn mac(authkey: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(authkey).expect("HMAC takes a key of any length")
}

/// The response to the challenge `message` (Python's `_create_response`):
/// `{sha256}` + HMAC-SHA256(authkey, message).
///
/// # Errors
/// [`AuthenticationError::LegacyMd5`] for a 3.11-style challenge, and
/// the other variants for a malformed one.
pub fn create_response(authkey: &[u8], message: &[u8]) -> Result<Vec<u8>, AuthenticationError> {
    digest_and_payload(message)?;
    let mut m = mac(authkey);
    m.update(message);
    Ok([SHA256_PREFIX, m.finalize().into_bytes().as_slice()].concat())
}

/// Checks `response` to the challenge `message` (Python's
/// `_verify_challenge`), in constant time.
///
/// # Errors
/// [`AuthenticationError::WrongDigest`] for a wrong MAC (a wrong key), the
/// other variants for a malformed or legacy response.
pub fn verify_response(
    authkey: &[u8],
    message: &[u8],
    response: &[u8],
) -> Result<(), AuthenticationError> {
    let got = digest_and_payload(response)?;
    let mut m = mac(authkey);
    m.update(message);
    m.verify_slice(got)
        .map_err(|_| AuthenticationError::WrongDigest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_round_trips_and_wrong_key_fails() {
        let msg = challenge_message(&[7; MESSAGE_LENGTH]);
        let r = create_response(b"key", &msg).expect("response");
        assert_eq!(r.len(), 8 + 32);
        verify_response(b"key", &msg, &r).expect("verify");
        assert_eq!(
            verify_response(b"other", &msg, &r),
            Err(AuthenticationError::WrongDigest)
        );
    }

    #[test]
    fn legacy_and_other_digests_are_refused() {
        assert_eq!(
            create_response(b"k", &[0; 20]),
            Err(AuthenticationError::LegacyMd5)
        );
        assert_eq!(
            verify_response(b"k", b"x", &[0; 16]),
            Err(AuthenticationError::LegacyMd5)
        );
        let mut sha384 = b"{sha384}".to_vec();
        sha384.extend([0; 48]);
        assert_eq!(
            create_response(b"k", &sha384),
            Err(AuthenticationError::UnsupportedDigest("sha384".into()))
        );
        assert!(matches!(
            create_response(b"k", &[b'x'; 50]),
            Err(AuthenticationError::Protocol(_))
        ));
        // A truncated MAC is a wrong digest, not a panic.
        let msg = challenge_message(&[1; MESSAGE_LENGTH]);
        assert_eq!(
            verify_response(b"k", &msg, b"{sha256}abc"),
            Err(AuthenticationError::WrongDigest)
        );
    }
}
