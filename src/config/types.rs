//! Variable type constraints (`string`, `number`, `bool`, `list(T)`, `set(T)`, `map(T)`,
//! `object({...})`, `any`) and conversion of values to them, following Terraform's rules.

use hcl::{Expression, Value};

/// A Terraform-style type constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeConstraint {
    /// Any value.
    Any,
    /// A string (numbers and bools convert).
    String,
    /// A number (numeric strings convert).
    Number,
    /// A bool (`"true"`/`"false"` convert).
    Bool,
    /// A list of T.
    List(Box<TypeConstraint>),
    /// A set of T (unique, sorted).
    Set(Box<TypeConstraint>),
    /// A map of T.
    Map(Box<TypeConstraint>),
    /// An object with the given attribute types.
    Object(Vec<(String, TypeConstraint)>),
}

impl TypeConstraint {
    /// Parses a type expression such as `list(string)`.
    ///
    /// # Errors
    ///
    /// A message naming the unsupported type.
    pub fn parse(expr: &Expression) -> Result<TypeConstraint, String> {
        match expr {
            Expression::Variable(v) => match v.as_str() {
                "any" => Ok(TypeConstraint::Any),
                "string" => Ok(TypeConstraint::String),
                "number" => Ok(TypeConstraint::Number),
                "bool" => Ok(TypeConstraint::Bool),
                other => Err(format!(
                    "unknown type `{other}`; expected `string`, `number`, `bool`, `list(...)`, `set(...)`, `map(...)`, `object({{...}})` or `any`"
                )),
            },
            Expression::FuncCall(call) => {
                let name = call.name.name.as_str();
                if call.args.len() != 1 {
                    return Err(format!("type `{name}(...)` takes exactly one argument"));
                }
                let arg = &call.args[0];
                match name {
                    "list" | "tuple" => Ok(TypeConstraint::List(Box::new(Self::parse(arg)?))),
                    "set" => Ok(TypeConstraint::Set(Box::new(Self::parse(arg)?))),
                    "map" => Ok(TypeConstraint::Map(Box::new(Self::parse(arg)?))),
                    "object" => match arg {
                        Expression::Object(obj) => {
                            let mut attrs = Vec::new();
                            for (k, v) in obj {
                                let key = match k {
                                    hcl::ObjectKey::Identifier(i) => i.as_str().to_string(),
                                    hcl::ObjectKey::Expression(Expression::String(s)) => s.clone(),
                                    _ => return Err("object type keys must be names".into()),
                                };
                                attrs.push((key, Self::parse(v)?));
                            }
                            Ok(TypeConstraint::Object(attrs))
                        }
                        _ => Err("`object(...)` takes an object of attribute types".into()),
                    },
                    other => Err(format!("unknown type constructor `{other}(...)`")),
                }
            }
            _ => Err("a type must be written as `string`, `list(string)`, ...".into()),
        }
    }

    /// Whether a raw `--var` string should be taken literally (string types) or parsed as HCL.
    pub fn is_string(&self) -> bool {
        matches!(self, TypeConstraint::String)
    }

    /// Converts `value` to this type, as Terraform converts variable values.
    ///
    /// # Errors
    ///
    /// A message naming what was expected and what was given.
    pub fn convert(&self, value: Value) -> Result<Value, String> {
        match (self, value) {
            (TypeConstraint::Any, v) => Ok(v),
            (_, Value::Null) => Ok(Value::Null),
            (TypeConstraint::String, Value::String(s)) => Ok(Value::String(s)),
            (TypeConstraint::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
            (TypeConstraint::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
            (TypeConstraint::Number, Value::Number(n)) => Ok(Value::Number(n)),
            (TypeConstraint::Number, Value::String(s)) => {
                parse_number(&s).ok_or_else(|| format!("expected a number, got `{s}`"))
            }
            (TypeConstraint::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
            (TypeConstraint::Bool, Value::String(s)) if s == "true" || s == "false" => {
                Ok(Value::Bool(s == "true"))
            }
            (TypeConstraint::List(t), Value::Array(items)) => items
                .into_iter()
                .map(|v| t.convert(v))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            (TypeConstraint::Set(t), Value::Array(items)) => {
                let mut out: Vec<Value> = Vec::new();
                for v in items {
                    let v = t.convert(v)?;
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                Ok(Value::Array(out))
            }
            (TypeConstraint::Map(t), Value::Object(map)) => {
                let mut out = hcl::Map::new();
                for (k, v) in map {
                    out.insert(k, t.convert(v)?);
                }
                Ok(Value::Object(out))
            }
            (TypeConstraint::Object(attrs), Value::Object(mut map)) => {
                let mut out = hcl::Map::new();
                for (name, ty) in attrs {
                    match map.shift_remove(name) {
                        Some(v) => {
                            out.insert(
                                name.clone(),
                                ty.convert(v)
                                    .map_err(|e| format!("attribute `{name}`: {e}"))?,
                            );
                        }
                        None => return Err(format!("attribute `{name}` is required")),
                    }
                }
                Ok(Value::Object(out))
            }
            (ty, v) => Err(format!(
                "expected {}, got {}",
                ty.describe(),
                describe_value(&v)
            )),
        }
    }

    /// A short description such as `a list of string`.
    pub fn describe(&self) -> String {
        match self {
            TypeConstraint::Any => "any value".into(),
            TypeConstraint::String => "a string".into(),
            TypeConstraint::Number => "a number".into(),
            TypeConstraint::Bool => "a bool".into(),
            TypeConstraint::List(t) => {
                format!("a list of {}", t.describe().trim_start_matches("a "))
            }
            TypeConstraint::Set(t) => format!("a set of {}", t.describe().trim_start_matches("a ")),
            TypeConstraint::Map(t) => format!("a map of {}", t.describe().trim_start_matches("a ")),
            TypeConstraint::Object(_) => "an object".into(),
        }
    }
}

/// A number written as text: a whole number that fits in 64 bits, or a finite decimal. A whole
/// number too large for 64 bits is refused rather than rounded to a float.
fn parse_number(s: &str) -> Option<Value> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Value::from(u));
    }
    if is_whole_number_text(s) {
        return None;
    }
    s.parse::<f64>()
        .ok()
        .and_then(|f| hcl::Number::from_f64(f).map(Value::Number))
}

/// Whether `s` is written as a whole number: digits with an optional sign.
pub fn is_whole_number_text(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A short description of a value's type (`a string`, `a list`, ...).
pub fn describe_value(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(s: &str) -> TypeConstraint {
        TypeConstraint::parse(&s.parse::<Expression>().unwrap()).unwrap()
    }

    #[test]
    fn parses_and_converts_nested_types() {
        assert_eq!(
            ty("list(string)"),
            TypeConstraint::List(Box::new(TypeConstraint::String))
        );
        let v = ty("map(number)")
            .convert(hcl::value!({ a = "1", b = 2 }))
            .unwrap();
        assert_eq!(v, hcl::value!({ a = 1, b = 2 }));
        assert_eq!(
            ty("set(string)")
                .convert(hcl::value!(["a", "b", "a"]))
                .unwrap(),
            hcl::value!(["a", "b"])
        );
    }

    #[test]
    fn rejects_wrong_types() {
        let err = ty("number").convert(Value::from("four")).unwrap_err();
        assert_eq!(err, "expected a number, got `four`");
        let err = ty("list(string)").convert(Value::from(true)).unwrap_err();
        assert_eq!(err, "expected a list of string, got a bool");
        assert!(TypeConstraint::parse(&"strng".parse::<Expression>().unwrap()).is_err());
    }
}
