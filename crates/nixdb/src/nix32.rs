//! nix32, Nix's base-32 encoding, and the XOR fold that makes store-path hash parts.
//!
//! The alphabet is `0123456789abcdfghijklmnpqrsvwxyz` (no `e`, `o`, `t`, `u`). The bytes are
//! read as one little-endian bit string and printed from the most significant 5-bit group
//! down, so the **last** character holds the lowest 5 bits of byte 0. This is not RFC 4648
//! base32: neither the alphabet nor the bit order match.
//!
//! ```
//! use buildimage_nixdb::nix32;
//!
//! assert_eq!(nix32::encode(&[0x1f]), "0z");
//! assert_eq!(nix32::decode("0z")?, vec![0x1f]);
//! # Ok::<(), buildimage_nixdb::Error>(())
//! ```

use crate::error::{Error, Result};

/// The 32 characters of nix32, in digit order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// `IS_NIX32[b]` is true when byte `b` is one of the [`ALPHABET`] characters.
pub(crate) const IS_NIX32: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = true;
        i += 1;
    }
    table
};

/// `DIGIT[b]` is the value of character `b`, or `0xff` when `b` is not in the alphabet.
pub(crate) const DIGIT: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The number of nix32 characters for `nbytes` bytes: `(8 * nbytes - 1) / 5 + 1`, 0 for none.
///
/// 52 for a SHA-256 digest, 32 for the 20-byte hash part of a store path.
pub const fn encoded_len(nbytes: usize) -> usize {
    if nbytes == 0 {
        0
    } else {
        (8 * nbytes - 1) / 5 + 1
    }
}

/// Encodes bytes as nix32.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        // The 5 bits may straddle two bytes; the high byte contributes its low bits.
        let mut c = u16::from(bytes[i]) >> j;
        if let Some(&next) = bytes.get(i + 1) {
            c |= u16::from(next) << (8 - j);
        }
        out.push(char::from(ALPHABET[usize::from(c & 0x1f)]));
    }
    out
}

/// Decodes nix32 text.
///
/// The length must be one that [`encode`] produces (`encoded_len(n)` for some `n`), every
/// character must be in the [`ALPHABET`], and the first character must not set bits beyond
/// the last byte: every byte string has exactly one nix32 form, as in Nix.
pub fn decode(text: &str) -> Result<Vec<u8>> {
    let bad = |reason| Error::InvalidNix32 {
        input: text.to_owned(),
        reason,
    };
    let chars = text.as_bytes();
    let nbytes = chars.len() * 5 / 8;
    if encoded_len(nbytes) != chars.len() {
        return Err(bad("impossible length"));
    }
    let mut out = vec![0u8; nbytes];
    for (n, &ch) in chars.iter().rev().enumerate() {
        let digit = DIGIT[usize::from(ch)];
        if digit == 0xff {
            return Err(bad("character outside the nix32 alphabet"));
        }
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        out[i] |= digit << j;
        let carry = u16::from(digit) >> (8 - j);
        if i + 1 < nbytes {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(bad("bits set beyond the last byte (non-canonical)"));
        }
    }
    Ok(out)
}

/// XOR-folds `hash` into `size` bytes: byte `i` of the input goes into byte `i % size` by XOR.
///
/// This is how Nix turns a SHA-256 digest into the 20 bytes behind a store path's hash part.
pub fn compress_hash(hash: &[u8], size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size];
    if size == 0 {
        return out;
    }
    for (i, b) in hash.iter().enumerate() {
        out[i % size] ^= b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn unhex(s: &str) -> Vec<u8> {
        data_encoding::HEXLOWER.decode(s.as_bytes()).unwrap()
    }

    /// The vectors of docs/formats.md §6.3, cross-checked with `nix-hash`.
    const VECTORS: &[(&str, &str)] = &[
        ("1f", "0z"),
        (
            "8a12321522fd91efbd60ebb2481af88580f61600",
            "00bgd045z0d4icpbc2yyz4gx48ak44la",
        ),
        (
            "b3a24de97a8fdbc835b9833169501030b8977031bcb54b3b3ac13740f846ab30",
            "0c5b8vw40dy178xlpddw65q9gf1h2186jcc3p4swinwggbllv8mk",
        ),
    ];

    #[test]
    fn known_vectors_encode_and_decode() {
        for (hex, text) in VECTORS {
            assert_eq!(encode(&unhex(hex)), *text, "encode {hex}");
            assert_eq!(decode(text).unwrap(), unhex(hex), "decode {text}");
        }
        let empty = Sha256::digest(b"");
        assert_eq!(
            encode(&empty),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
    }

    #[test]
    fn lengths() {
        assert_eq!(encoded_len(32), 52);
        assert_eq!(encoded_len(20), 32);
        assert_eq!(encoded_len(1), 2);
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn decode_rejects_characters_outside_the_alphabet() {
        for bad in ["0e", "0o", "0t", "0u", "0Z", "0-", "0\u{e9}"] {
            let err = decode(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidNix32 { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn decode_rejects_non_canonical_input() {
        // One byte has 8 bits; "0z" uses 5 + 3 of them. A first character above 7 sets bit 8+.
        assert_eq!(decode("7z").unwrap(), vec![0xff]);
        assert!(decode("8z").is_err());
        assert!(decode("zz").is_err());
        // 3 characters encode no whole number of bytes.
        assert!(decode("000").is_err());
        assert!(decode("0").is_err());
    }

    #[test]
    fn compress_hash_xor_folds() {
        assert_eq!(compress_hash(&[1, 2, 3, 4, 5], 2), vec![1 ^ 3 ^ 5, 2 ^ 4]);
        assert_eq!(compress_hash(&[7; 20], 20), vec![7; 20]);
        // The fixture recipe of docs/formats.md §6.4: a valid 32-character hash part.
        let part = encode(&compress_hash(&Sha256::digest(b"fake:hello"), 20));
        assert_eq!(part.len(), 32);
        assert!(part.bytes().all(|b| IS_NIX32[usize::from(b)]));
    }

    proptest::proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let text = encode(&bytes);
            proptest::prop_assert_eq!(text.len(), encoded_len(bytes.len()));
            proptest::prop_assert_eq!(decode(&text).unwrap(), bytes);
        }
    }
}
