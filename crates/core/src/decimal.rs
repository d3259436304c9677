//! Decimal digits for the numbers written on every request (budget
//! period keys, the remaining-budget and rate-limit headers, client
//! addresses in rate-limiter keys). `format!` parses its pattern and pads
//! through `fmt::Formatter`, several hundred instructions a number; these
//! write the digits straight into the string.

/// Appends `n` in decimal to `out`, padded with zeros to `width` digits.
pub fn push(out: &mut String, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for _ in (digits.len() - at)..width {
        out.push('0');
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_format() {
        let mut samples: Vec<u64> = (0..1200).collect();
        samples.extend([
            9_999,
            10_000,
            999_999_999,
            1_000_000_000,
            u64::MAX - 1,
            u64::MAX,
        ]);
        samples.extend((0..64).map(|shift| 1u64 << shift));
        for n in samples {
            for width in [0, 1, 2, 4, 9, 25] {
                let mut out = String::from("x");
                super::push(&mut out, n, width);
                assert_eq!(out, format!("x{n:0width$}"), "{n} to {width} digits");
            }
        }
    }
}
