//! Kubernetes resource quantities (`100m`, `1.5Gi`, `1e3`) as exact integers.
//!
//! Requests, limits and capacities arrive as quantity strings and Heapster reports them as integer
//! millicores and bytes. The digits are kept as an integer with power-of-ten and power-of-two
//! scales, so `0.1` is exactly a tenth and never drifts the way a float would; rounding happens
//! once, at the end, the way Kubernetes' `Value()` and `MilliValue()` round.

use thiserror::Error;

/// How much of a bad quantity an error message repeats.
const SHOWN_CHARS: usize = 64;

/// A `u128` holds every integer of up to 38 decimal digits.
const MAX_POW10: i64 = 38;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("invalid quantity {text:?}: {reason}")]
    Invalid { text: String, reason: &'static str },
    #[error("quantity {text:?} is out of range")]
    Overflow { text: String },
}

/// An exact quantity: `±digits × 10^exp10 × 2^exp2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedQuantity {
    negative: bool,
    /// Significant digits, without leading or trailing zeros (0 for zero).
    digits: u128,
    exp10: i64,
    exp2: u32,
}

impl ParsedQuantity {
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// The quantity in units of `10^unit_exp10`, rounded away from zero as Kubernetes'
    /// `ScaledValue` rounds (up, for the non-negative quantities resources are); `None` when the
    /// result does not fit in an `i64`.
    pub fn scaled(&self, unit_exp10: i64) -> Option<i64> {
        if self.digits == 0 {
            return Some(0);
        }
        // exp2 is at most 60 (`Ei`), so the shift itself cannot overflow.
        let mut magnitude = self.digits.checked_mul(1u128 << self.exp2)?;
        let exp = self.exp10.checked_sub(unit_exp10)?;
        if exp >= 0 {
            magnitude = magnitude.checked_mul(pow10(exp)?)?;
        } else {
            // Rounding up in steps equals rounding up once: ceil(ceil(x/a)/b) = ceil(x/(ab)).
            // Once the magnitude is 1 every further step keeps it at 1.
            let mut remaining = exp.unsigned_abs();
            while remaining > 0 && magnitude > 1 {
                let step = remaining.min(MAX_POW10 as u64);
                magnitude = magnitude.div_ceil(pow10(step as i64)?);
                remaining -= step;
            }
        }
        if self.negative {
            let magnitude = i128::try_from(magnitude).ok()?;
            i64::try_from(-magnitude).ok()
        } else {
            i64::try_from(magnitude).ok()
        }
    }

    /// Thousandths of the unit, rounded up: cpu in millicores.
    pub fn milli_value(&self) -> Option<i64> {
        self.scaled(-3)
    }

    /// Whole units, rounded up: bytes, counts.
    pub fn value(&self) -> Option<i64> {
        self.scaled(0)
    }
}

fn pow10(exp: i64) -> Option<u128> {
    if (0..=MAX_POW10).contains(&exp) { Some(10u128.pow(exp as u32)) } else { None }
}

fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

fn invalid(text: &str, reason: &'static str) -> QuantityError {
    QuantityError::Invalid { text: shown(text), reason }
}

fn overflow(text: &str) -> QuantityError {
    QuantityError::Overflow { text: shown(text) }
}

/// The scale a suffix stands for: `(power of ten, power of two)`.
fn suffix_scale(suffix: &str) -> Option<(i64, u32)> {
    let scale = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            // A decimal exponent: `e3`, `E-3`, `e+3`. A lone `E` is exa, matched above.
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (i64::from(rest.parse::<i32>().ok()?), 0)
        }
    };
    Some(scale)
}

/// Parses a quantity as Kubernetes writes them: `<sign><digits>.<digits><suffix>`, where the
/// suffix is a decimal SI prefix (`n` to `E`), a binary one (`Ki` to `Ei`) or an exponent (`e3`).
pub fn parse_quantity(q: &str) -> Result<ParsedQuantity, QuantityError> {
    let (negative, unsigned) = match q.as_bytes().first() {
        Some(b'-') => (true, &q[1..]),
        Some(b'+') => (false, &q[1..]),
        _ => (false, q),
    };
    let int_end = unsigned.find(|c: char| !c.is_ascii_digit()).unwrap_or(unsigned.len());
    let (int_part, rest) = unsigned.split_at(int_end);
    let (frac_part, suffix) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let frac_end = after_dot.find(|c: char| !c.is_ascii_digit()).unwrap_or(after_dot.len());
            after_dot.split_at(frac_end)
        }
        None => ("", rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(invalid(q, "expected a number"));
    }
    let (suffix_exp10, exp2) = suffix_scale(suffix).ok_or_else(|| invalid(q, "unknown suffix"))?;

    let mut digits: u128 = 0;
    // Zeros since the last non-zero digit: they only count once another digit follows, so
    // trailing zeros move into the exponent and never take room in `digits`.
    let mut zeros: i64 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        if b == b'0' {
            zeros += 1;
            continue;
        }
        let digit = u128::from(b - b'0');
        digits = if digits == 0 {
            digit
        } else {
            pow10(zeros + 1)
                .and_then(|scale| digits.checked_mul(scale))
                .and_then(|d| d.checked_add(digit))
                .ok_or_else(|| overflow(q))?
        };
        zeros = 0;
    }
    if digits == 0 {
        return Ok(ParsedQuantity { negative: false, digits: 0, exp10: 0, exp2: 0 });
    }
    // Lengths come from a `&str`, so they fit in an i64; the exponent came from an i32.
    let exp10 = suffix_exp10 - frac_part.len() as i64 + zeros;
    Ok(ParsedQuantity { negative, digits, exp10, exp2 })
}

/// Thousandths of a quantity, rounded up like Kubernetes' `MilliValue()`: cpu in millicores.
pub fn milli_value(q: &str) -> Result<i64, QuantityError> {
    parse_quantity(q)?.milli_value().ok_or_else(|| overflow(q))
}

/// A quantity in whole units, rounded up like Kubernetes' `Value()`: memory and storage bytes.
pub fn value(q: &str) -> Result<i64, QuantityError> {
    parse_quantity(q)?.value().ok_or_else(|| overflow(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(q: &str) -> i64 {
        milli_value(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn units(q: &str) -> i64 {
        value(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(millis("100m"), 100);
        assert_eq!(millis("1"), 1000);
        assert_eq!(millis("4"), 4000);
        assert_eq!(millis("0.5"), 500);
        assert_eq!(millis(".5"), 500);
        assert_eq!(millis("1."), 1000);
        assert_eq!(millis("0.1"), 100);
        assert_eq!(millis("250m"), 250);
        assert_eq!(millis("1500u"), 2);
        assert_eq!(millis("1000000n"), 1);
        assert_eq!(millis("0"), 0);
        assert_eq!(millis("0m"), 0);
        assert_eq!(millis("+2"), 2000);
    }

    #[test]
    fn fractions_round_up() {
        assert_eq!(millis("2.5m"), 3);
        assert_eq!(millis("1n"), 1);
        assert_eq!(millis("0.0001"), 1);
        assert_eq!(units("100m"), 1);
        assert_eq!(units("1.5"), 2);
        assert_eq!(units("0.1Ki"), 103); // 102.4
        assert_eq!(units("1e-40"), 1);
        assert_eq!(units("1e-2000000000"), 1);
        // Negative quantities round away from zero, as Kubernetes' ScaledValue does.
        assert_eq!(millis("-2.5m"), -3);
        assert_eq!(units("-0.5"), -1);
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(units("128Mi"), 128 * 1024 * 1024);
        assert_eq!(units("1Gi"), 1 << 30);
        assert_eq!(units("1.5Gi"), 3 << 29);
        assert_eq!(units("1G"), 1_000_000_000);
        assert_eq!(units("500M"), 500_000_000);
        assert_eq!(units("1k"), 1000);
        assert_eq!(units("2Ti"), 2 << 40);
        assert_eq!(units("1Pi"), 1 << 50);
        assert_eq!(units("3T"), 3_000_000_000_000);
        assert_eq!(units("2P"), 2_000_000_000_000_000);
        assert_eq!(units("16954240Ki"), 16_954_240 * 1024);
        assert_eq!(units("8165556Ki"), 8_165_556 * 1024);
        assert_eq!(units("15625027559"), 15_625_027_559);
        assert_eq!(units("7E"), 7_000_000_000_000_000_000);
        assert_eq!(units("7Ei"), 7 << 60);
    }

    #[test]
    fn decimal_exponents() {
        assert_eq!(units("1e3"), 1000);
        assert_eq!(units("1E3"), 1000);
        assert_eq!(units("1e+3"), 1000);
        assert_eq!(millis("1E-3"), 1);
        assert_eq!(millis("1.5e-3"), 2);
        assert_eq!(units("12.5e2"), 1250);
        assert_eq!(units("0.000e99"), 0);
    }

    #[test]
    fn exact_where_floats_drift() {
        // 0.1 + 0.2 style inputs: a float path would give 299.99999... or 300.00000001.
        assert_eq!(millis("0.3"), 300);
        assert_eq!(millis("0.29"), 290);
        assert_eq!(units("1.1Gi"), 1_181_116_007); // 1181116006.4 rounds up
        assert_eq!(units("9007199254740993"), 9_007_199_254_740_993); // 2^53 + 1
        assert_eq!(units("9223372036854775807"), i64::MAX);
        assert_eq!(units("0.000000000000000000000000000000000000000000000001e48"), 1);
        assert_eq!(units("100000000000000000000000000000000000000000000000e-46"), 10);
    }

    #[test]
    fn out_of_range_is_an_error() {
        for q in ["9223372036854775808", "8Ei", "10E", "1e19", "1e400", "-9223372036854775809"] {
            let err = value(q);
            assert!(matches!(err, Err(QuantityError::Overflow { ref text }) if text == q), "{q}: {err:?}");
        }
        // Fits as whole units, not as thousandths.
        assert_eq!(units("9223372036854775807m"), 9_223_372_036_854_776);
        assert!(matches!(milli_value("9223372036854775807"), Err(QuantityError::Overflow { .. })));
        assert_eq!(units("-9223372036854775808"), i64::MIN);
        let many_digits = "1".repeat(40);
        assert!(matches!(parse_quantity(&many_digits), Err(QuantityError::Overflow { .. })));
    }

    #[test]
    fn garbage_is_an_error_naming_the_text() {
        for q in [
            "", "abc", "-", "+", ".", "1KB", "1K", "1 Gi", " 1", "1e", "1e3.5", "1e+", "1Gi3", "1.2.3",
            "1mi", "--1",
        ] {
            match parse_quantity(q) {
                Err(QuantityError::Invalid { text, .. }) => assert_eq!(text, q),
                other => panic!("{q:?} parsed as {other:?}"),
            }
        }
        let message = milli_value("12 cores").unwrap_err().to_string();
        assert!(message.contains("\"12 cores\""), "{message}");
    }

    #[test]
    fn long_garbage_is_cut_in_messages() {
        let long = "x".repeat(500);
        let message = value(&long).unwrap_err().to_string();
        assert!(message.len() < 120, "{message}");
        assert!(message.contains("..."));
    }

    #[test]
    fn parsed_quantity_scales() {
        let q = parse_quantity("1.5Gi").unwrap();
        assert!(!q.is_negative());
        assert_eq!(q.value(), Some(1_610_612_736));
        assert_eq!(q.scaled(6), Some(1611)); // megabytes, rounded up
        assert_eq!(q.scaled(-10), None);
        assert_eq!(parse_quantity("-0").unwrap(), parse_quantity("0.000").unwrap());
        assert!(parse_quantity("-1m").unwrap().is_negative());
    }
}
