//! Exact money: amounts are integers of 10^-12 currency units from the ingest boundary on, split
//! exactly by integer weights (`split`), and rounded to cents once, at the output (largest
//! remainder here, the controlled rounding of a whole table in `rounding`; docs/design.md §3).

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

/// Decimal places carried for every amount. Billing sources print at most 10 (CUR) or 11 (FOCUS)
/// decimals, so 12 keeps every input digit while an i128 still holds sums far beyond any bill.
pub const MONEY_SCALE: u32 = 12;
const UNITS_PER_CURRENCY: i128 = 10i128.pow(MONEY_SCALE);
const UNITS_PER_CENT: i128 = UNITS_PER_CURRENCY / 100;

/// An exact amount of money, in 10^-12 currency units. It has no `f64` constructor on purpose.
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money {
    // Two halves rather than an i128, whose 16-byte alignment pads every cost line and piece
    // that holds one (docs/design.md §8, compact rows). `(hi, lo)` orders as the i128 does.
    hi: i64,
    lo: u64,
}

/// Why a text is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyParseError {
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    #[error("`{0}` has more than {MONEY_SCALE} decimal places")]
    TooPrecise(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

impl Money {
    pub const ZERO: Money = Money { hi: 0, lo: 0 };

    const fn of(units: i128) -> Money {
        Money { hi: (units >> 64) as i64, lo: units as u64 }
    }

    const fn get(self) -> i128 {
        ((self.hi as i128) << 64) | self.lo as i128
    }

    /// From raw 10^-12 units, e.g. the backing integer of a polars `Decimal(38, 12)`.
    pub const fn from_units(units: i128) -> Self {
        Money::of(units)
    }

    pub const fn from_cents(cents: i64) -> Self {
        Money::of(cents as i128 * UNITS_PER_CENT)
    }

    pub const fn units(self) -> i128 {
        self.get()
    }

    pub fn is_zero(self) -> bool {
        self.get() == 0
    }

    pub fn is_negative(self) -> bool {
        self.get() < 0
    }

    /// Rounds to whole cents, half away from zero (the rule people check by hand).
    pub fn round_to_cents(self) -> Cents {
        let (q, r) = (self.get() / UNITS_PER_CENT, self.get() % UNITS_PER_CENT);
        let half = UNITS_PER_CENT / 2;
        let cents = if r >= half {
            q + 1
        } else if r <= -half {
            q - 1
        } else {
            q
        };
        Cents(cents as i64)
    }

    /// Whole cents towards negative infinity, and what is left over (always in `0..1 cent`).
    fn floor_cents(self) -> (i64, i128) {
        let q = self.get().div_euclid(UNITS_PER_CENT);
        (q as i64, self.get().rem_euclid(UNITS_PER_CENT))
    }
}

impl FromStr for Money {
    type Err = MoneyParseError;

    /// Parses a plain decimal (`-12.3400000001`, `+5`, `.5`) exactly. Exponent notation is
    /// accepted too because some exports print tiny amounts as `1.0E-7`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        let bad = || MoneyParseError::NotANumber(text.to_string());
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().map_err(|_| bad())?),
            None => (s, 0),
        };
        let (negative, digits) = match mantissa.as_bytes().first() {
            Some(b'-') => (true, &mantissa[1..]),
            Some(b'+') => (false, &mantissa[1..]),
            _ => (false, mantissa),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        if int_part.is_empty() && frac_part.is_empty() || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // Value = digits * 10^(exponent - frac_len); we want it in units of 10^-SCALE.
        let all_digits: String = format!("{int_part}{frac_part}");
        let shift = exponent - frac_part.len() as i32 + MONEY_SCALE as i32;
        let trimmed = all_digits.trim_start_matches('0');
        let mut units: i128 = 0;
        let too_large = || MoneyParseError::TooLarge(text.to_string());
        if shift >= 0 {
            for b in trimmed.bytes() {
                units = units.checked_mul(10).and_then(|u| u.checked_add((b - b'0') as i128)).ok_or_else(too_large)?;
            }
            units = units.checked_mul(10i128.checked_pow(shift as u32).ok_or_else(too_large)?).ok_or_else(too_large)?;
        } else {
            let cut = (-shift) as usize;
            let keep = trimmed.len().saturating_sub(cut);
            if trimmed[keep..].bytes().any(|b| b != b'0') {
                return Err(MoneyParseError::TooPrecise(text.to_string()));
            }
            for b in trimmed[..keep].bytes() {
                units = units.checked_mul(10).and_then(|u| u.checked_add((b - b'0') as i128)).ok_or_else(too_large)?;
            }
        }
        Ok(Money::of(if negative { -units } else { units }))
    }
}

impl fmt::Display for Money {
    /// Full precision with trailing zeros trimmed, so the text parses back to the same amount.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.get() < 0 { "-" } else { "" };
        let abs = self.get().unsigned_abs();
        let int = abs / UNITS_PER_CURRENCY as u128;
        let frac = abs % UNITS_PER_CURRENCY as u128;
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = format!("{frac:0width$}", width = MONEY_SCALE as usize);
        write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({})", self.get())
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money::of(self.get() + rhs.get())
    }
}
impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        *self = *self + rhs;
    }
}
impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money::of(self.get() - rhs.get())
    }
}
impl SubAssign for Money {
    fn sub_assign(&mut self, rhs: Money) {
        *self = *self - rhs;
    }
}
impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money::of(-self.get())
    }
}
impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}
impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        iter.copied().sum()
    }
}

/// Serialised as its exact decimal text: JSON numbers are floats to most readers.
impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A whole number of cents: what outputs print.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(pub i64);

impl Cents {
    pub fn to_money(self) -> Money {
        Money::from_cents(self.0)
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        // `pad` honours width and alignment, so `{:>14}` lines figures up in explain.
        f.pad(&format!("{sign}{}.{:02}", abs / 100, abs % 100))
    }
}

impl Sum for Cents {
    fn sum<I: Iterator<Item = Cents>>(iter: I) -> Cents {
        Cents(iter.map(|c| c.0).sum())
    }
}

/// Rounds a group of amounts to cents so that the printed parts add up exactly to the rounded
/// total of the group (largest-remainder / Hamilton method). Ties on the remainder go to the
/// earlier item, so the result depends only on the order the caller fixes (sort first).
pub fn round_largest_remainder(amounts: &[Money]) -> Vec<Cents> {
    let total: Money = amounts.iter().sum();
    round_to_total(amounts, total.round_to_cents())
}

/// Rounds a group of amounts to cents that add up to `target`, which must lie between the sum
/// of the parts' floors and that sum plus one cent per part (e.g. the group's total as already
/// rounded one level up). The cents go to the largest remainders.
pub fn round_to_total(amounts: &[Money], target: Cents) -> Vec<Cents> {
    let target = target.0;
    let floors: Vec<(i64, i128)> = amounts.iter().map(|a| a.floor_cents()).collect();
    let floor_sum: i64 = floors.iter().map(|(c, _)| c).sum();
    // 0 <= missing <= len: each remainder is below one cent and the target is within a cent of
    // the exact sum.
    let missing = usize::try_from(target - floor_sum).expect("target below the sum of floors").min(amounts.len());
    let mut order: Vec<usize> = (0..amounts.len()).collect();
    order.sort_by(|&a, &b| floors[b].1.cmp(&floors[a].1).then(a.cmp(&b)));
    let mut cents: Vec<Cents> = floors.iter().map(|(c, _)| Cents(*c)).collect();
    for &i in order.iter().take(missing) {
        cents[i].0 += 1;
    }
    cents
}

/// Splits an exact amount by integer weights; the parts add up exactly (largest remainder at
/// the smallest money unit). A negative amount (a credit) splits the same way, negated.
pub fn split(amount: Money, weights: &[u128]) -> Vec<Money> {
    let total: u128 = weights.iter().fold(0u128, |sum, w| sum.checked_add(*w).expect("split weights overflow u128"));
    assert!(total > 0, "split needs a positive total weight");
    let negative = amount.is_negative();
    let magnitude = amount.units().unsigned_abs();
    let mut parts: Vec<(u128, u128)> = weights.iter().map(|w| mul_div_rem(magnitude, *w, total)).collect();
    let assigned: u128 = parts.iter().map(|(f, _)| f).sum();
    let mut missing = magnitude - assigned;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| parts[b].1.cmp(&parts[a].1).then(a.cmp(&b)));
    for i in order {
        if missing == 0 {
            break;
        }
        if weights[i] > 0 {
            parts[i].0 += 1;
            missing -= 1;
        }
    }
    parts
        .into_iter()
        .map(|(units, _)| {
            let units = units as i128;
            Money::from_units(if negative { -units } else { units })
        })
        .collect()
}

/// `a * b / c` and its remainder, exactly, for `b <= c` (a weight never exceeds the total).
/// The product can pass u128 (a $10M line against a team with $34M of direct cost does), so it
/// is carried in 256 bits when it must be.
fn mul_div_rem(a: u128, b: u128, c: u128) -> (u128, u128) {
    debug_assert!(b <= c && c > 0);
    // a = q*c + r with r < c; a*b/c = q*b + r*b/c, and q*b <= a fits.
    let (q, r) = (a / c, a % c);
    if let Some(rb) = r.checked_mul(b) {
        return (q * b + rb / c, rb % c);
    }
    // r*b in 256 bits (hi, lo), then long division by c, one bit at a time (rare: only for
    // weights and remainders beyond 2^64 each).
    let (hi, lo) = mul_wide(r, b);
    let (mut quotient, mut rem) = (0u128, 0u128);
    for i in (0..256).rev() {
        let bit = if i >= 128 { (hi >> (i - 128)) & 1 } else { (lo >> i) & 1 };
        // rem < c, so 2*rem + bit fits 129 bits: track the carry.
        let carry = rem >> 127;
        rem = (rem << 1) | bit;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            if i < 128 {
                quotient |= 1 << i;
            }
        }
    }
    (q * b + quotient, rem)
}

/// The full 256-bit product of two u128, as (high, low).
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a_hi, a_lo) = (a >> 64, a & u64::MAX as u128);
    let (b_hi, b_lo) = (b >> 64, b & u64::MAX as u128);
    let (ll, lh, hl, hh) = (a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi);
    let mid = (ll >> 64) + (lh & u64::MAX as u128) + (hl & u64::MAX as u128);
    let lo = (ll & u64::MAX as u128) | (mid << 64);
    let hi = hh + (lh >> 64) + (hl >> 64) + (mid >> 64);
    (hi, lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_is_exact_and_proportional() {
        let parts = split(Money::from_units(100), &[1, 1, 1]);
        assert_eq!(parts.iter().copied().sum::<Money>(), Money::from_units(100));
        assert_eq!(parts, vec![Money::from_units(34), Money::from_units(33), Money::from_units(33)]);
        let parts = split(Money::from_units(-10), &[3, 0, 7]);
        assert_eq!(parts, vec![Money::from_units(-3), Money::ZERO, Money::from_units(-7)]);
        let big = Money::from_units(i128::MAX / 4);
        let parts = split(big, &[u64::MAX as u128, 1, 12345]);
        assert_eq!(parts.iter().copied().sum::<Money>(), big);
    }

    #[test]
    fn split_of_large_amounts_by_large_weights_is_exact_not_a_panic() {
        // Regression: a $10M line split by direct cost against a team with $34M of it multiplied
        // past u128 and panicked.
        let amount = Money::from_units(10_000_000 * 10i128.pow(12) + 7);
        let weights = [34_000_000 * 10u128.pow(12) + 3, 1_000_000 * 10u128.pow(12), 5];
        let parts = split(amount, &weights);
        assert_eq!(parts.iter().copied().sum::<Money>(), amount);
        let total: f64 = weights.iter().map(|w| *w as f64).sum();
        for (part, w) in parts.iter().zip(weights) {
            let expected = amount.units() as f64 * w as f64 / total;
            assert!((part.units() as f64 - expected).abs() <= 1.0 + expected * 1e-12, "{part:?} vs {expected}");
        }
        // The wide path agrees with the narrow one where both apply.
        for (a, b, c) in [(u128::MAX / 3, 1u128 << 70, 1u128 << 71), (12345, 6789, 10_000), (1 << 100, (1 << 90) + 1, (1 << 91) + 17)] {
            let (q, r) = mul_div_rem(a, b, c);
            let (hi, lo) = mul_wide(a, b);
            let (qh, ql) = mul_wide(q, c);
            let (sum_lo, carry) = ql.overflowing_add(r);
            assert_eq!((qh + carry as u128, sum_lo), (hi, lo), "{a} * {b} / {c}");
            assert!(r < c);
        }
    }

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    #[test]
    fn parses_exactly_and_prints_back() {
        for s in ["0", "1", "-1", "0.00000080000", "20.52022672899", "-0.000000000001", "123456789.5"] {
            let v = m(s);
            assert_eq!(m(&v.to_string()), v, "{s}");
        }
        assert_eq!(m("0.00000080000").units(), 800_000);
        assert_eq!(m("1.0E-7").units(), 100_000);
        assert_eq!(m("+.5").units(), 500_000_000_000);
        assert_eq!(m("20.52022672899").to_string(), "20.52022672899");
    }

    #[test]
    fn rejects_what_is_not_money() {
        for s in ["", "abc", "1.2.3", "NaN", "inf", "-", "1e", "0x10"] {
            assert!(s.parse::<Money>().is_err(), "{s} should not parse");
        }
        assert!(matches!("0.0000000000001".parse::<Money>(), Err(MoneyParseError::TooPrecise(_))));
    }

    #[test]
    fn cents_pad_to_a_width() {
        assert_eq!(format!("{:>10}|", Cents(-12_345)), "   -123.45|");
        assert_eq!(format!("{}", Cents(5)), "0.05");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(m("0.125").round_to_cents(), Cents(13));
        assert_eq!(m("-0.125").round_to_cents(), Cents(-13));
        assert_eq!(m("0.1249999").round_to_cents(), Cents(12));
        assert_eq!(Cents(-5).to_string(), "-0.05");
        assert_eq!(Cents(123456).to_string(), "1234.56");
    }

    #[test]
    fn largest_remainder_keeps_the_total() {
        let parts = [m("0.333333"), m("0.333333"), m("0.333334")];
        let cents = round_largest_remainder(&parts);
        assert_eq!(cents.iter().copied().sum::<Cents>(), Cents(100));
        assert_eq!(cents, vec![Cents(33), Cents(33), Cents(34)]);
    }

    proptest! {
        #[test]
        fn largest_remainder_sums_to_rounded_total(units in proptest::collection::vec(-10_000_000_000_000i128..10_000_000_000_000i128, 0..40)) {
            let amounts: Vec<Money> = units.into_iter().map(Money::from_units).collect();
            let cents = round_largest_remainder(&amounts);
            let total: Money = amounts.iter().sum();
            prop_assert_eq!(cents.iter().copied().sum::<Cents>(), total.round_to_cents());
            for (a, c) in amounts.iter().zip(&cents) {
                let diff = (a.units() - c.to_money().units()).abs();
                prop_assert!(diff < UNITS_PER_CENT, "{a} printed as {c}");
            }
        }

        #[test]
        fn display_round_trips(units in any::<i64>()) {
            let v = Money::from_units(units as i128 * 1000 + 7);
            prop_assert_eq!(v.to_string().parse::<Money>().unwrap(), v);
        }
    }
}
