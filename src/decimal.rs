//! Decimal text to the nearest double (ties to even), as `str::parse::<f64>` gives it, in a
//! fraction of the code: the standard library's parser brings a 10 KB table of powers of five
//! and 6 KB of code into the module for the few numbers a configuration or a token holds.
//!
//! Short numbers (up to 15 significant digits, a power of ten up to 22: every number a
//! configuration is likely to hold) take one exact multiplication or division, which IEEE
//! rounds correctly. Any other number is computed exactly with big integers: the quotient of
//! the decimal and a power of two, its 53 bits by long division, rounded by the remainder.
//! tests/json.rs checks it against `str::parse` on edge cases and on random numbers.

/// Significant digits kept exactly; a longer number keeps a sticky digit standing for the
/// rest, which is enough to round right (a double is decided by its first 768 digits).
const MAX_DIGITS: usize = 800;

/// The double nearest to a JSON number's text (`-?digits(.digits)?([eE][+-]?digits)?`), or
/// `None` when the text is not one. Infinite when it is too large for a double.
pub fn parse_f64(text: &str) -> Option<f64> {
    let (negative, body) = text.strip_prefix('-').map_or((false, text), |t| (true, t));
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (body.get(..i)?, body.get(i + 1..)?),
        None => (body, "0"),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exp = exponent(exp)?;
    // Significant digits and the decimal exponent of the last one kept.
    let mut digits: Vec<u8> = Vec::new();
    let mut dropped = false;
    for b in int.bytes().chain(frac.bytes()) {
        if digits.is_empty() && b == b'0' {
            continue;
        }
        if digits.len() < MAX_DIGITS {
            digits.push(b - b'0');
        } else if b != b'0' {
            dropped = true;
        }
    }
    let magnitude = if digits.is_empty() {
        0.0
    } else {
        // value = digits × 10^scale (before the sticky digit), and 10^(lead - 1) ≤ value.
        let kept = digits.len() as i64;
        let lead = int.trim_start_matches('0').len() as i64
            - if int.trim_start_matches('0').is_empty() {
                frac.len() as i64 - frac.trim_start_matches('0').len() as i64
            } else {
                0
            };
        let scale = exp + lead - kept;
        if dropped {
            digits.push(1);
        }
        magnitude(&digits, scale - i64::from(dropped), exp + lead)
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The exponent's digits, saturated far past any double's range.
fn exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.bytes().fold(0i64, |n, b| (n * 10 + i64::from(b - b'0')).min(1_000_000));
    Some(if negative { -n } else { n })
}

/// digits × 10^scale, where the value lies in [10^(top - 1), 10^top).
fn magnitude(digits: &[u8], scale: i64, top: i64) -> f64 {
    if top > 310 {
        return f64::INFINITY;
    }
    if top < -330 {
        return 0.0;
    }
    if digits.len() <= 15 && (-22..=22).contains(&scale) {
        // Exact operands: one correctly rounded operation.
        let d = digits.iter().fold(0u64, |n, &d| n * 10 + u64::from(d)) as f64;
        let p = (0..scale.unsigned_abs()).fold(1.0f64, |p, _| p * 10.0);
        return if scale < 0 { d / p } else { d * p };
    }
    exact(digits, scale)
}

/// The nearest double to digits × 10^scale, by big-integer arithmetic.
fn exact(digits: &[u8], scale: i64) -> f64 {
    let mut p = Big::default();
    for &d in digits {
        p.mul_add(10, u32::from(d));
    }
    let mut q = Big::from(1);
    let pow = if scale < 0 { &mut q } else { &mut p };
    for _ in 0..scale.unsigned_abs() {
        pow.mul_add(10, 0);
    }
    // value = p / q = m × 2^k with m of 53 bits: k from the bit lengths, then corrected once.
    let mut k = p.bits() as i64 - q.bits() as i64 - 53;
    loop {
        k = k.max(-1074);
        let (a, mut b) = (p.shl((-k).max(0) as usize), q.shl(k.max(0) as usize));
        b = b.shl(53);
        if k > -1074 && a.cmp(&b.shr1()) == std::cmp::Ordering::Less {
            k -= 1;
            continue;
        }
        if a.cmp(&b) != std::cmp::Ordering::Less {
            k += 1;
            continue;
        }
        // Long division: 53 bits of a / (b >> 53), then the remainder rounds.
        let mut rem = a;
        let mut m: u64 = 0;
        for _ in 0..53 {
            b = b.shr1();
            m <<= 1;
            if rem.cmp(&b) != std::cmp::Ordering::Less {
                rem.sub(&b);
                m |= 1;
            }
        }
        let half = rem.shl(1).cmp(&b);
        if half == std::cmp::Ordering::Greater || (half == std::cmp::Ordering::Equal && m & 1 == 1) {
            m += 1;
        }
        if m == 1 << 53 {
            m = 1 << 52;
            k += 1;
        }
        if m < 1 << 52 {
            return f64::from_bits(m); // subnormal (k = -1074), or the smallest normal
        }
        let biased = k + 1075;
        if biased >= 2047 {
            return f64::INFINITY;
        }
        return f64::from_bits((biased as u64) << 52 | (m & ((1 << 52) - 1)));
    }
}

/// An unsigned big integer, little-endian 32-bit limbs without leading zeros.
#[derive(Clone, Default)]
struct Big(Vec<u32>);

impl Big {
    fn from(n: u32) -> Big {
        let mut b = Big(vec![n]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn mul_add(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn bits(&self) -> usize {
        self.0.last().map_or(0, |top| self.0.len() * 32 - top.leading_zeros() as usize)
    }

    fn shl(&self, n: usize) -> Big {
        let (limbs, bits) = (n / 32, n % 32);
        let mut out = vec![0u32; limbs];
        let mut carry = 0u32;
        for &limb in &self.0 {
            out.push(if bits == 0 { limb } else { limb << bits | carry });
            carry = if bits == 0 { 0 } else { limb >> (32 - bits) };
        }
        out.push(carry);
        let mut b = Big(out);
        b.trim();
        b
    }

    fn shr1(&self) -> Big {
        let mut out = self.0.clone();
        let mut carry = 0u32;
        for limb in out.iter_mut().rev() {
            let next = *limb & 1;
            *limb = *limb >> 1 | carry << 31;
            carry = next;
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn cmp(&self, other: &Big) -> std::cmp::Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// self -= other, for other ≤ self.
    fn sub(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let v = i64::from(*limb) - i64::from(other.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(v < 0);
            *limb = v.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }
}
