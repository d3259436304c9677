//! Lower-case hex for the identifiers and hashes made on every request
//! (request ids, key hashes): a table lookup per digit, where the `hex`
//! crate's `encode` collects an iterator of chars into a `String` one
//! char at a time.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lower-case hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

/// Appends `bytes` as lower-case hex to `out`.
pub fn push(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::encode(&bytes), hex::encode(&bytes));
        assert_eq!(super::encode(&[]), "");
    }
}
