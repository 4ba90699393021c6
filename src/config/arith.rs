//! Checked arithmetic for expressions: `+ - * / %` never panic, never produce an infinity or
//! NaN, and never wrap.
//!
//! `hcl-rs` evaluates arithmetic on its `Number` with unchecked operators: `5 % 0` panics,
//! `1 / 0` becomes an infinity (shown as `1.797…e308`, or `null` in JSON), `0 / 0` a NaN, and
//! integer overflow wraps. [`rewrite`] replaces every arithmetic operation of an `hcl-edit`
//! expression, including those inside string templates, by a call to one of the functions
//! declared by [`declare`], which compute the result exactly or return an error: division by
//! zero, a result out of range.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Number, Value};
use hcl_edit::expr::{BinaryOperator, Expression, FuncArgs as EditArgs, FuncCall};
use hcl_edit::visit_mut::{self, VisitMut};
use hcl_edit::{Ident, Span as _};

use super::Span;

/// The internal functions and the operators they implement.
const OPS: &[(&str, &str)] = &[
    ("__opsctl_add", "+"),
    ("__opsctl_sub", "-"),
    ("__opsctl_mul", "*"),
    ("__opsctl_div", "/"),
    ("__opsctl_mod", "%"),
];

/// Whether `name` is one of the internal arithmetic functions.
pub fn is_internal(name: &str) -> bool {
    OPS.iter().any(|(n, _)| *n == name)
}

/// Declares the arithmetic functions on `ctx`.
pub fn declare(ctx: &mut Context<'_>) {
    let defs: [(&str, hcl::eval::Func); 5] = [
        ("__opsctl_add", add),
        ("__opsctl_sub", sub),
        ("__opsctl_mul", mul),
        ("__opsctl_div", div),
        ("__opsctl_mod", rem),
    ];
    for (name, func) in defs {
        ctx.declare_func(name, FuncDef::new(func, [ParamType::Any, ParamType::Any]));
    }
}

/// A context holding only the arithmetic functions (for variable values, which may not call
/// functions but may compute).
pub fn context() -> &'static Context<'static> {
    static CTX: std::sync::OnceLock<Context<'static>> = std::sync::OnceLock::new();
    CTX.get_or_init(|| {
        let mut ctx = Context::new();
        declare(&mut ctx);
        ctx
    })
}

/// Replaces every arithmetic operation in `expr` by a call to a checked function. Returns the
/// internal functions now called, with the span of the operation (in file `file`).
pub fn rewrite(file: usize, expr: &mut Expression) -> Vec<(String, Span)> {
    let mut r = Rewriter {
        file,
        calls: Vec::new(),
    };
    r.visit_expr_mut(expr);
    r.calls
}

struct Rewriter {
    file: usize,
    calls: Vec<(String, Span)>,
}

impl VisitMut for Rewriter {
    fn visit_expr_mut(&mut self, node: &mut Expression) {
        // Operands first, so that nested operations are rewritten too.
        visit_mut::visit_expr_mut(self, node);
        let Expression::BinaryOp(op) = node else {
            return;
        };
        let name = match *op.operator.value() {
            BinaryOperator::Plus => "__opsctl_add",
            BinaryOperator::Minus => "__opsctl_sub",
            BinaryOperator::Mul => "__opsctl_mul",
            BinaryOperator::Div => "__opsctl_div",
            BinaryOperator::Mod => "__opsctl_mod",
            _ => return,
        };
        let span = Span {
            file: self.file,
            range: op.span().unwrap_or(0..0),
        };
        let placeholder = Expression::Null(hcl_edit::Decorated::new(hcl_edit::expr::Null));
        let lhs = std::mem::replace(&mut op.lhs_expr, placeholder.clone());
        let rhs = std::mem::replace(&mut op.rhs_expr, placeholder);
        let call = FuncCall::new(Ident::new(name), EditArgs::from(vec![lhs, rhs]));
        *node = Expression::FuncCall(Box::new(call));
        self.calls.push((name.to_string(), span));
    }
}

/// The operator an internal function implements, for messages.
pub fn operator_of(name: &str) -> Option<&'static str> {
    OPS.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
}

/// Either an exact integer or a finite float.
enum Num {
    Int(i128),
    Float(f64),
}

fn operand(value: &Value, op: &str, side: &str) -> Result<Num, String> {
    let number = match value {
        Value::Number(n) => *n,
        // Terraform converts numeric strings to numbers for arithmetic.
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Number::from)
            .ok()
            .or_else(|| s.trim().parse::<u64>().ok().map(Number::from))
            .or_else(|| {
                s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
                    .then(|| s.trim().parse::<f64>().ok().and_then(Number::from_f64))
                    .flatten()
            })
            .ok_or_else(|| {
                format!("the {side} operand of `{op}` must be a number, got the string `{s}`")
            })?,
        other => {
            return Err(format!(
                "the {side} operand of `{op}` must be a number, got {}",
                super::types::describe_value(other)
            ))
        }
    };
    Ok(if let Some(i) = number.as_i64() {
        Num::Int(i128::from(i))
    } else if let Some(u) = number.as_u64() {
        Num::Int(i128::from(u))
    } else {
        Num::Float(number.as_f64().unwrap_or(f64::NAN))
    })
}

fn operands(args: &FuncArgs, op: &str) -> Result<(Num, Num), String> {
    Ok((
        operand(&args[0], op, "left")?,
        operand(&args[1], op, "right")?,
    ))
}

#[allow(clippy::cast_precision_loss)]
fn as_f64(n: &Num) -> f64 {
    match n {
        Num::Int(i) => *i as f64,
        Num::Float(f) => *f,
    }
}

fn int_result(i: Option<i128>, op: &str) -> Result<Value, String> {
    let i = i.ok_or_else(|| out_of_range(op))?;
    if let Ok(v) = i64::try_from(i) {
        Ok(Value::from(v))
    } else if let Ok(v) = u64::try_from(i) {
        Ok(Value::from(v))
    } else {
        Err(out_of_range(op))
    }
}

fn float_result(f: f64, op: &str) -> Result<Value, String> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| out_of_range(op))
}

fn out_of_range(op: &str) -> String {
    format!(
        "the result of `{op}` is out of range (whole numbers must be between {} and {}, other numbers finite)",
        i64::MIN,
        u64::MAX
    )
}

fn add(args: FuncArgs) -> Result<Value, String> {
    match operands(&args, "+")? {
        (Num::Int(a), Num::Int(b)) => int_result(a.checked_add(b), "+"),
        (a, b) => float_result(as_f64(&a) + as_f64(&b), "+"),
    }
}

fn sub(args: FuncArgs) -> Result<Value, String> {
    match operands(&args, "-")? {
        (Num::Int(a), Num::Int(b)) => int_result(a.checked_sub(b), "-"),
        (a, b) => float_result(as_f64(&a) - as_f64(&b), "-"),
    }
}

fn mul(args: FuncArgs) -> Result<Value, String> {
    match operands(&args, "*")? {
        (Num::Int(a), Num::Int(b)) => int_result(a.checked_mul(b), "*"),
        (a, b) => float_result(as_f64(&a) * as_f64(&b), "*"),
    }
}

fn div(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = operands(&args, "/")?;
    if as_f64(&b) == 0.0 {
        return Err("division by zero".to_string());
    }
    match (a, b) {
        // Exact when it divides evenly (`6 / 3` is the whole number 2).
        (Num::Int(a), Num::Int(b)) if a % b == 0 => int_result(a.checked_div(b), "/"),
        (a, b) => float_result(as_f64(&a) / as_f64(&b), "/"),
    }
}

fn rem(args: FuncArgs) -> Result<Value, String> {
    let (a, b) = operands(&args, "%")?;
    if as_f64(&b) == 0.0 {
        return Err("modulo by zero".to_string());
    }
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => int_result(a.checked_rem(b), "%"),
        (a, b) => float_result(as_f64(&a) % as_f64(&b), "%"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate as _;

    fn eval(src: &str) -> Result<Value, String> {
        let mut expr = hcl_edit::parser::parse_expr(src).map_err(|e| e.to_string())?;
        rewrite(0, &mut expr);
        let expr = hcl::Expression::from(expr);
        expr.evaluate(context()).map_err(|e| e.to_string())
    }

    #[test]
    fn arithmetic_is_exact_or_an_error() {
        assert_eq!(eval("1 + 2 * 3").unwrap(), Value::from(7));
        assert_eq!(eval("(1 + 2) * 3").unwrap(), Value::from(9));
        assert_eq!(eval("7 / 2").unwrap(), Value::from(3.5));
        assert_eq!(eval("6 / 3").unwrap(), Value::from(2));
        assert_eq!(eval("-7 % 3").unwrap(), Value::from(-1));
        assert_eq!(eval("\"5\" + 1").unwrap(), Value::from(6));
        assert_eq!(
            eval("18446744073709551615 - 1").unwrap(),
            Value::from(18_446_744_073_709_551_614_u64)
        );
        assert_eq!(eval("\"x${2 * 21}\"").unwrap(), Value::from("x42"));
        for (src, want) in [
            ("5 % 0", "modulo by zero"),
            ("1 / 0", "division by zero"),
            ("0 / 0", "division by zero"),
            ("1.5 % 0.0", "modulo by zero"),
            ("18446744073709551615 + 1", "out of range"),
            (
                "-9223372036854775807 - 18446744073709551615",
                "out of range",
            ),
            ("1e308 * 10", "out of range"),
            ("\"${5 % 0}\"", "modulo by zero"),
            ("\"a\" + 1", "left operand of `+` must be a number"),
            ("1 - [1]", "right operand of `-` must be a number"),
        ] {
            let err = eval(src).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
        }
    }
}
