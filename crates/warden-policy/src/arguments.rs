//! Tool-call arguments as Cedar values.
//!
//! Arguments come from the agent, so they are converted value by value into Cedar
//! expressions, never through Cedar's JSON entity format: there an object such as
//! `{"__entity": {"type": "Agent", "id": "admin"}}` would become an entity reference, letting
//! an agent forge one. Here every JSON object is a plain record.
//!
//! No schema is applied: a value of the wrong type reaches the policy as it is, and a policy
//! that uses it as the declared type fails to evaluate, which Warden turns into a refusal.

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Number, Value};

/// How deep arrays and objects may nest, counting the arguments object itself as 1.
pub const MAX_ARGUMENT_DEPTH: usize = 32;

/// Arguments that cannot be given to a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ArgumentError {
    /// Arrays and objects nested deeper than [`MAX_ARGUMENT_DEPTH`].
    #[error("arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels")]
    TooDeep,
    /// Cedar refused to build a record (it cannot happen with keys from a JSON object).
    #[error("arguments cannot be represented in Cedar: {0}")]
    Unrepresentable(String),
}

/// The arguments object as a Cedar record.
pub(crate) fn to_cedar(
    arguments: &Map<String, Value>,
) -> Result<RestrictedExpression, ArgumentError> {
    record(arguments, 1)
}

fn record(map: &Map<String, Value>, depth: usize) -> Result<RestrictedExpression, ArgumentError> {
    if depth > MAX_ARGUMENT_DEPTH {
        return Err(ArgumentError::TooDeep);
    }
    let mut fields = Vec::with_capacity(map.len());
    for (k, v) in map {
        if let Some(e) = value(v, depth)? {
            fields.push((k.clone(), e));
        }
    }
    RestrictedExpression::new_record(fields)
        .map_err(|e| ArgumentError::Unrepresentable(e.to_string()))
}

/// `None` for null: the attribute is left out, so `has` is false.
fn value(v: &Value, depth: usize) -> Result<Option<RestrictedExpression>, ArgumentError> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Number(n) => number(n),
        Value::Array(items) => {
            if depth + 1 > MAX_ARGUMENT_DEPTH {
                return Err(ArgumentError::TooDeep);
            }
            let mut members = Vec::with_capacity(items.len());
            for item in items {
                if let Some(e) = value(item, depth + 1)? {
                    members.push(e);
                }
            }
            RestrictedExpression::new_set(members)
        }
        Value::Object(map) => record(map, depth + 1)?,
    }))
}

fn number(n: &Number) -> RestrictedExpression {
    if let Some(i) = n.as_i64() {
        return RestrictedExpression::new_long(i);
    }
    let text = n.to_string();
    match decimal_literal(&text) {
        Some(d) => RestrictedExpression::new_decimal(d),
        None => RestrictedExpression::new_string(text),
    }
}

/// Cedar's decimal: a 64-bit count of ten-thousandths.
const DECIMAL_PLACES: i64 = 4;

/// The Cedar `decimal` literal for a JSON number written as `text`, if it has at most four
/// decimal places and fits; `None` otherwise.
pub(crate) fn decimal_literal(text: &str) -> Option<String> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty()
        || !(int_part.bytes().chain(frac_part.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits × 10^-places
    let mut digits = format!("{int_part}{frac_part}");
    let mut places = i64::try_from(frac_part.len()).ok()?.checked_sub(exponent)?;
    while places > 0 && digits.ends_with('0') {
        digits.pop();
        places -= 1;
    }
    let digits = digits.trim_start_matches('0');
    if places > DECIMAL_PLACES {
        return None;
    }
    // At most 19 significant digits fit an i64; anything longer cannot fit after scaling.
    let shift = u32::try_from(DECIMAL_PLACES - places).ok()?;
    if digits.len() + shift as usize > 24 {
        return None;
    }
    let magnitude: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse::<i128>().ok()?
    };
    let units = magnitude.checked_mul(10i128.checked_pow(shift)?)?;
    let units = if negative { -units } else { units };
    let units = i64::try_from(units).ok()?;
    let sign = if units < 0 { "-" } else { "" };
    let abs = units.unsigned_abs();
    Some(format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::{Context, EvalResult};
    use serde_json::json;

    fn converted(args: Value) -> Result<EvalResult, ArgumentError> {
        let Value::Object(map) = args else {
            panic!("arguments must be an object")
        };
        let expr = to_cedar(&map)?;
        let ctx = Context::from_pairs([("arguments".to_owned(), expr)]).unwrap();
        Ok(ctx.get("arguments").unwrap())
    }

    fn field(r: &EvalResult, k: &str) -> Option<EvalResult> {
        match r {
            EvalResult::Record(rec) => rec.get(k).cloned(),
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn scalars_map_to_cedar_types() {
        let r = converted(json!({"s": "x", "i": -7, "b": true})).unwrap();
        assert_eq!(field(&r, "s"), Some(EvalResult::String("x".into())));
        assert_eq!(field(&r, "i"), Some(EvalResult::Long(-7)));
        assert_eq!(field(&r, "b"), Some(EvalResult::Bool(true)));
    }

    #[test]
    fn entity_escape_is_a_plain_record() {
        let r =
            converted(json!({"owner": {"__entity": {"type": "Agent", "id": "admin"}}})).unwrap();
        let owner = field(&r, "owner").unwrap();
        assert!(matches!(owner, EvalResult::Record(_)), "{owner:?}");
        let inner = field(&owner, "__entity").unwrap();
        assert_eq!(
            field(&inner, "id"),
            Some(EvalResult::String("admin".into()))
        );
        // The extension escape is not interpreted either.
        let r = converted(json!({"x": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}})).unwrap();
        assert!(matches!(field(&r, "x"), Some(EvalResult::Record(_))));
    }

    #[test]
    fn nulls_are_left_out() {
        let r = converted(json!({"a": null, "b": [1, null], "c": {"d": null}})).unwrap();
        assert_eq!(field(&r, "a"), None);
        match field(&r, "b").unwrap() {
            EvalResult::Set(s) => assert_eq!(s.len(), 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(field(&field(&r, "c").unwrap(), "d"), None);
    }

    #[test]
    fn arrays_are_sets() {
        let r = converted(json!({"to": ["a", "b", "a"]})).unwrap();
        match field(&r, "to").unwrap() {
            EvalResult::Set(s) => {
                assert_eq!(s.len(), 2);
                assert!(s.contains(&EvalResult::String("a".into())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fractional_numbers_become_decimals_or_strings() {
        let r = converted(json!({
            "price": 12.5,
            "tiny": 0.0001,
            "fine": 0.00001,
            "huge": 1e300,
            "big": 18446744073709551615u64,
            "neg": -3.25,
        }))
        .unwrap();
        let ext = |k| match field(&r, k).unwrap() {
            EvalResult::ExtensionValue(s) => s,
            other => panic!("{k}: {other:?}"),
        };
        assert!(ext("price").contains("12.5"), "{}", ext("price"));
        assert!(ext("tiny").contains("0.0001"), "{}", ext("tiny"));
        assert!(ext("neg").contains("-3.25"), "{}", ext("neg"));
        assert_eq!(
            field(&r, "fine"),
            Some(EvalResult::String("0.00001".into()))
        );
        assert_eq!(field(&r, "huge"), Some(EvalResult::String("1e+300".into())));
        assert_eq!(
            field(&r, "big"),
            Some(EvalResult::String("18446744073709551615".into()))
        );
    }

    #[test]
    fn decimal_literals() {
        assert_eq!(decimal_literal("12.5").as_deref(), Some("12.5000"));
        assert_eq!(decimal_literal("-0.0").as_deref(), Some("0.0000"));
        assert_eq!(decimal_literal("1.5e3").as_deref(), Some("1500.0000"));
        assert_eq!(decimal_literal("2.5e+2").as_deref(), Some("250.0000"));
        assert_eq!(decimal_literal("1e-4").as_deref(), Some("0.0001"));
        assert_eq!(decimal_literal("1.23450").as_deref(), Some("1.2345"));
        assert_eq!(decimal_literal("1e-5"), None);
        assert_eq!(
            decimal_literal("922337203685477.5807").as_deref(),
            Some("922337203685477.5807")
        );
        assert_eq!(
            decimal_literal("-922337203685477.5808").as_deref(),
            Some("-922337203685477.5808")
        );
        assert_eq!(decimal_literal("922337203685477.5808"), None);
        assert_eq!(decimal_literal("1e400"), None);
        assert_eq!(decimal_literal("abc"), None);
    }

    fn nested(levels: usize) -> Value {
        // `levels` containers inside the arguments object, alternating arrays and objects.
        let mut v = json!("leaf");
        for i in 0..levels {
            v = if i % 2 == 0 {
                json!([v])
            } else {
                json!({"k": v})
            };
        }
        json!({ "deep": v })
    }

    #[test]
    fn depth_is_capped() {
        assert!(converted(nested(MAX_ARGUMENT_DEPTH - 1)).is_ok());
        assert_eq!(
            converted(nested(MAX_ARGUMENT_DEPTH)).unwrap_err(),
            ArgumentError::TooDeep
        );
        assert_eq!(converted(nested(500)).unwrap_err(), ArgumentError::TooDeep);
    }
}
