//! Terraform's built-in functions for opsctl expressions, registered on an `hcl::eval::Context`.
//!
//! Semantics follow Terraform (go-cty's stdlib) closely; "characters" are Unicode scalar values
//! rather than grapheme clusters, and regular-expression patterns are not supported.

use base64::Engine as _;
use chrono::{DateTime, Datelike as _, FixedOffset, Timelike as _, Utc};
use hcl::eval::{Context, Func, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};
use sha2::Digest as _;

/// The result type every function implementation returns.
type FnResult = Result<Value, String>;

/// Maximum number of elements `range` may produce, matching Terraform's limit.
const RANGE_LIMIT: usize = 1024;

/// Maximum width and precision of a `format` verb, and indentation of `indent`: enough for any
/// layout, small enough that no call allocates more than a few kilobytes of padding.
const FORMAT_WIDTH_LIMIT: usize = 10_000;

/// Declares every supported Terraform built-in function on `ctx`.
pub fn declare_all(ctx: &mut Context<'_>) {
    for (name, def) in definitions() {
        ctx.declare_func(name, def);
    }
    super::arith::declare(ctx);
}

/// Whether `name` is a supported function (validation checks calls before evaluation).
pub fn is_known(name: &str) -> bool {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| definitions().into_iter().map(|(n, _)| n).collect())
        .contains(&name)
        || super::arith::is_internal(name)
}

/// Every supported function: its name and definition.
pub fn definitions() -> Vec<(&'static str, FuncDef)> {
    use ParamType::{Any, Number as Num, String as Str};

    fn fixed<const N: usize>(params: [ParamType; N], func: Func) -> FuncDef {
        FuncDef::new(func, params)
    }
    fn variadic<const N: usize>(params: [ParamType; N], rest: ParamType, func: Func) -> FuncDef {
        FuncDef::builder()
            .params(params)
            .variadic_param(rest)
            .build(func)
    }
    let list = || ParamType::array_of(Any);
    let map = || ParamType::object_of(Any);

    let defs: Vec<(&str, FuncDef)> = vec![
        // Strings.
        ("upper", fixed([Str], upper)),
        ("lower", fixed([Str], lower)),
        ("title", fixed([Str], title)),
        ("trimspace", fixed([Str], trimspace)),
        ("trim", fixed([Str, Str], trim)),
        ("trimprefix", fixed([Str, Str], trimprefix)),
        ("trimsuffix", fixed([Str, Str], trimsuffix)),
        ("replace", fixed([Str, Str, Str], replace)),
        ("split", fixed([Str, Str], split)),
        ("join", variadic([Str], list(), join)),
        ("format", variadic([Str], Any, format)),
        ("formatlist", variadic([Str], Any, formatlist)),
        ("substr", fixed([Str, Num, Num], substr)),
        ("strrev", fixed([Str], strrev)),
        ("startswith", fixed([Str, Str], startswith)),
        ("endswith", fixed([Str, Str], endswith)),
        ("strcontains", fixed([Str, Str], strcontains)),
        ("chomp", fixed([Str], chomp)),
        ("indent", fixed([Num, Str], indent)),
        // Collections.
        (
            "length",
            fixed([ParamType::one_of([Str, list(), map()])], length),
        ),
        ("concat", variadic([], list(), concat)),
        ("contains", fixed([list(), Any], contains)),
        ("distinct", fixed([list()], distinct)),
        ("element", fixed([list(), Num], element)),
        ("flatten", fixed([list()], flatten)),
        ("keys", fixed([map()], keys)),
        ("values", fixed([map()], values)),
        ("lookup", variadic([map(), Str], Any, lookup)),
        ("merge", variadic([], ParamType::nullable(map()), merge)),
        ("range", variadic([], Num, range)),
        ("reverse", fixed([list()], reverse)),
        ("slice", fixed([list(), Num, Num], slice)),
        ("sort", fixed([list()], sort)),
        ("toset", fixed([list()], toset)),
        ("tolist", fixed([ParamType::nullable(list())], tolist)),
        ("tomap", fixed([ParamType::nullable(map())], tomap)),
        ("coalesce", variadic([], Any, coalesce)),
        ("coalescelist", variadic([], list(), coalescelist)),
        ("compact", fixed([list()], compact)),
        ("zipmap", fixed([ParamType::array_of(Str), list()], zipmap)),
        ("index", fixed([list(), Any], index)),
        ("one", fixed([list()], one)),
        ("sum", fixed([list()], sum)),
        ("min", variadic([], Num, min)),
        ("max", variadic([], Num, max)),
        ("alltrue", fixed([list()], alltrue)),
        ("anytrue", fixed([list()], anytrue)),
        ("chunklist", fixed([list(), Num], chunklist)),
        // Type conversion.
        ("tostring", fixed([Any], tostring)),
        ("tonumber", fixed([Any], tonumber)),
        ("tobool", fixed([Any], tobool)),
        // Numbers.
        ("abs", fixed([Num], abs)),
        ("ceil", fixed([Num], ceil)),
        ("floor", fixed([Num], floor)),
        ("parseint", fixed([Str, Num], parseint)),
        ("pow", fixed([Num, Num], pow)),
        ("signum", fixed([Num], signum)),
        // Encoding.
        ("jsonencode", fixed([Any], jsonencode)),
        ("jsondecode", fixed([Str], jsondecode)),
        ("yamldecode", fixed([Str], yamldecode)),
        ("base64encode", fixed([Str], base64encode)),
        ("file", fixed([Str], file)),
        ("base64decode", fixed([Str], base64decode)),
        ("urlencode", fixed([Str], urlencode)),
        // Hashing.
        ("sha256", fixed([Str], sha256)),
        ("sha512", fixed([Str], sha512)),
        ("base64sha256", fixed([Str], base64sha256)),
        ("base64sha512", fixed([Str], base64sha512)),
        // Time.
        ("timestamp", fixed([], timestamp)),
        ("formatdate", fixed([Str, Str], formatdate)),
        ("timeadd", fixed([Str, Str], timeadd)),
    ];
    defs.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Argument and value helpers
// ---------------------------------------------------------------------------------------------

/// Borrows a string argument (the parameter type was already checked by `hcl::eval`).
fn string_arg(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected a string, got {}", type_name(value)))
}

/// Borrows a list argument.
fn list_arg(value: &Value) -> Result<&[Value], String> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("expected a list, got {}", type_name(value)))
}

/// Borrows an object argument.
fn map_arg(value: &Value) -> Result<&Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("expected an object, got {}", type_name(value)))
}

/// Borrows a number argument.
fn number_arg(value: &Value) -> Result<&Number, String> {
    value
        .as_number()
        .ok_or_else(|| format!("expected a number, got {}", type_name(value)))
}

/// Reads a number argument that must be a whole number; `what` names it in errors.
fn whole_arg(value: &Value, what: &str) -> Result<i64, String> {
    let number = number_arg(value)?;
    whole_number(number).ok_or_else(|| format!("{what} must be a whole number, got `{number}`"))
}

/// Converts a number to `i64` if it is integral and in range.
fn whole_number(number: &Number) -> Option<i64> {
    if let Some(i) = number.as_i64() {
        return Some(i);
    }
    let f = number.as_f64()?;
    // The range check keeps the cast exact; integral floats in range convert losslessly.
    #[allow(clippy::cast_possible_truncation)]
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

/// The Terraform-style type name of a value, for error messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Builds a number value from an `i128`, falling back to a float when it does not fit.
fn int_value(i: i128) -> Value {
    if let Ok(i) = i64::try_from(i) {
        Value::from(i)
    } else if let Ok(u) = u64::try_from(i) {
        Value::from(u)
    } else {
        #[allow(clippy::cast_precision_loss)]
        let f = i as f64;
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// Builds a number value from a float, rejecting NaN and infinities.
fn float_value(f: f64) -> FnResult {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("result `{f}` is not a finite number"))
}

/// The exact integer value of a number, if it is stored as an integer.
fn number_i128(number: &Number) -> Option<i128> {
    number
        .as_i64()
        .map(i128::from)
        .or_else(|| number.as_u64().map(i128::from))
}

/// A number as `f64` (every `Number` has one).
fn number_f64(number: &Number) -> f64 {
    number.as_f64().unwrap_or_default()
}

/// Formats a number the way Terraform converts numbers to strings: plain decimal, no exponent.
fn number_to_string(number: &Number) -> String {
    if number.is_f64() {
        format!("{}", number_f64(number))
    } else {
        number.to_string()
    }
}

/// Parses a decimal number string the way Terraform's string-to-number conversion does.
fn parse_number(s: &str) -> Option<Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Number::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Number::from(u));
    }
    // A whole number too large for 64 bits is refused rather than rounded to a float.
    if super::types::is_whole_number_text(s) {
        return None;
    }
    // Reject Rust-only spellings such as `inf` and `NaN`.
    if s.chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

/// Converts a primitive value to a string (Terraform's implicit string conversion).
fn primitive_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(number_to_string(n)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Converts a value to a number (numbers, and strings holding a decimal number).
fn value_number(value: &Value) -> Option<Number> {
    match value {
        Value::Number(n) => Some(*n),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

/// Converts a value to a bool (bools, and the strings `"true"` and `"false"`).
fn value_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// Describes a value briefly for error messages: primitives verbatim, collections by type.
fn describe(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => type_name(value).to_owned(),
        other => format!("`{other}`"),
    }
}

/// Lowercase hexadecimal encoding of bytes.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// String functions
// ---------------------------------------------------------------------------------------------

/// `upper(string) -> string`: Terraform's `upper`, converts letters to uppercase.
fn upper(args: FuncArgs) -> FnResult {
    Ok(Value::from(string_arg(&args[0])?.to_uppercase()))
}

/// `lower(string) -> string`: Terraform's `lower`, converts letters to lowercase.
fn lower(args: FuncArgs) -> FnResult {
    Ok(Value::from(string_arg(&args[0])?.to_lowercase()))
}

/// `title(string) -> string`: Terraform's `title`, uppercases the first letter of each word.
fn title(args: FuncArgs) -> FnResult {
    // Mirrors Go's `strings.Title` word-boundary rule.
    fn is_separator(c: char) -> bool {
        if c.is_ascii() {
            return !(c.is_ascii_alphanumeric() || c == '_');
        }
        if c.is_alphanumeric() {
            return false;
        }
        c.is_whitespace()
    }
    let mut out = String::new();
    let mut prev = ' ';
    for c in string_arg(&args[0])?.chars() {
        if is_separator(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    Ok(Value::from(out))
}

/// `trimspace(string) -> string`: Terraform's `trimspace`, strips leading/trailing whitespace.
fn trimspace(args: FuncArgs) -> FnResult {
    Ok(Value::from(string_arg(&args[0])?.trim()))
}

/// `trim(string, cutset) -> string`: Terraform's `trim`, strips any cutset chars at both ends.
fn trim(args: FuncArgs) -> FnResult {
    let cutset = string_arg(&args[1])?;
    let s = string_arg(&args[0])?.trim_matches(|c| cutset.contains(c));
    Ok(Value::from(s))
}

/// `trimprefix(string, prefix) -> string`: Terraform's `trimprefix`, removes one prefix.
fn trimprefix(args: FuncArgs) -> FnResult {
    let s = string_arg(&args[0])?;
    let prefix = string_arg(&args[1])?;
    Ok(Value::from(s.strip_prefix(prefix).unwrap_or(s)))
}

/// `trimsuffix(string, suffix) -> string`: Terraform's `trimsuffix`, removes one suffix.
fn trimsuffix(args: FuncArgs) -> FnResult {
    let s = string_arg(&args[0])?;
    let suffix = string_arg(&args[1])?;
    Ok(Value::from(s.strip_suffix(suffix).unwrap_or(s)))
}

/// `replace(string, substring, replacement) -> string`: Terraform's `replace` (plain substrings).
fn replace(args: FuncArgs) -> FnResult {
    let s = string_arg(&args[0])?;
    let search = string_arg(&args[1])?;
    let replacement = string_arg(&args[2])?;
    if search.len() > 1 && search.starts_with('/') && search.ends_with('/') {
        return Err(format!(
            "regular expression patterns are not supported, got `{search}`"
        ));
    }
    Ok(Value::from(s.replace(search, replacement)))
}

/// `split(separator, string) -> list(string)`: Terraform's `split`.
fn split(args: FuncArgs) -> FnResult {
    let sep = string_arg(&args[0])?;
    let s = string_arg(&args[1])?;
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::from(c.to_string())).collect()
    } else {
        s.split(sep).map(Value::from).collect()
    };
    Ok(Value::Array(parts))
}

/// `join(separator, list...) -> string`: Terraform's `join`, concatenates list elements.
fn join(args: FuncArgs) -> FnResult {
    let sep = string_arg(&args[0])?;
    let lists: Vec<&Value> = args.variadic_args().collect();
    if lists.is_empty() {
        return Err("at least one list is required".to_owned());
    }
    let mut items = Vec::new();
    for list in lists {
        for (i, item) in list_arg(list)?.iter().enumerate() {
            match item {
                Value::Null => {
                    return Err(format!(
                        "element {i} is null; cannot concatenate null values"
                    ))
                }
                other => items.push(primitive_string(other).ok_or_else(|| {
                    format!("element {i} is a {}, not a string", type_name(other))
                })?),
            }
        }
    }
    Ok(Value::from(items.join(sep)))
}

/// `format(spec, values...) -> string`: Terraform's `format`, printf-style formatting.
fn format(args: FuncArgs) -> FnResult {
    let spec = string_arg(&args[0])?;
    Ok(Value::from(format_spec(spec, &args[1..])?))
}

/// `formatlist(spec, values...) -> list(string)`: Terraform's `formatlist`, `format` per element.
fn formatlist(args: FuncArgs) -> FnResult {
    let spec = string_arg(&args[0])?;
    let values = &args[1..];
    // Every list argument must have the same length; other arguments repeat.
    let mut len: Option<(usize, usize)> = None;
    for (i, value) in values.iter().enumerate() {
        if let Value::Array(items) = value {
            match len {
                None => len = Some((items.len(), i)),
                Some((n, first)) if n != items.len() => {
                    return Err(format!(
                        "argument {} has length {}, which is inconsistent with argument {} of length {n}",
                        i + 1,
                        items.len(),
                        first + 1
                    ));
                }
                Some(_) => {}
            }
        }
    }
    let count = len.map_or(1, |(n, _)| n);
    let mut out = Vec::with_capacity(count);
    for iteration in 0..count {
        let row: Vec<Value> = values
            .iter()
            .map(|value| match value {
                Value::Array(items) => items[iteration].clone(),
                other => other.clone(),
            })
            .collect();
        let s = format_spec(spec, &row)
            .map_err(|err| format!("error on format iteration {iteration}: {err}"))?;
        out.push(Value::from(s));
    }
    Ok(Value::Array(out))
}

/// `substr(string, offset, length) -> string`: Terraform's `substr`; negative offset counts
/// from the end, length `-1` means "to the end".
fn substr(args: FuncArgs) -> FnResult {
    let chars: Vec<char> = string_arg(&args[0])?.chars().collect();
    let offset = whole_arg(&args[1], "offset")?;
    let length = whole_arg(&args[2], "length")?;
    let total = i64::try_from(chars.len()).unwrap_or(i64::MAX);
    let start = if offset < 0 {
        (total + offset).max(0)
    } else {
        offset
    };
    if start >= total || length == 0 {
        return Ok(Value::from(""));
    }
    let end = if length < 0 {
        total
    } else {
        start.saturating_add(length).min(total)
    };
    // Both bounds are within `0..=total`, so the conversions cannot fail.
    let (start, end) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    Ok(Value::from(chars[start..end].iter().collect::<String>()))
}

/// `strrev(string) -> string`: Terraform's `strrev`, reverses the characters.
fn strrev(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        string_arg(&args[0])?.chars().rev().collect::<String>(),
    ))
}

/// `startswith(string, prefix) -> bool`: Terraform's `startswith`.
fn startswith(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        string_arg(&args[0])?.starts_with(string_arg(&args[1])?),
    ))
}

/// `endswith(string, suffix) -> bool`: Terraform's `endswith`.
fn endswith(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        string_arg(&args[0])?.ends_with(string_arg(&args[1])?),
    ))
}

/// `strcontains(string, substring) -> bool`: Terraform's `strcontains`.
fn strcontains(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        string_arg(&args[0])?.contains(string_arg(&args[1])?),
    ))
}

/// `chomp(string) -> string`: Terraform's `chomp`, removes trailing newline sequences.
fn chomp(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        string_arg(&args[0])?.trim_end_matches(['\r', '\n']),
    ))
}

/// `indent(spaces, string) -> string`: Terraform's `indent`, pads all lines but the first.
fn indent(args: FuncArgs) -> FnResult {
    let spaces = whole_arg(&args[0], "spaces")?;
    let spaces = usize::try_from(spaces)
        .map_err(|_| format!("spaces must not be negative, got `{spaces}`"))?;
    if spaces > FORMAT_WIDTH_LIMIT {
        return Err(format!(
            "spaces must be at most {FORMAT_WIDTH_LIMIT}, got `{spaces}`"
        ));
    }
    let pad = format!("\n{}", " ".repeat(spaces));
    Ok(Value::from(string_arg(&args[1])?.replace('\n', &pad)))
}

// ---------------------------------------------------------------------------------------------
// `format` implementation
// ---------------------------------------------------------------------------------------------

/// One parsed `%` verb of a format string.
#[derive(Debug, Default)]
struct Verb {
    /// The verb's source text, e.g. `%-5.2f`.
    raw: String,
    /// Byte offset of the `%` in the format string.
    offset: usize,
    /// One-based index of the argument this verb consumes.
    arg: usize,
    mode: char,
    zero: bool,
    sharp: bool,
    plus: bool,
    minus: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// Renders a `format` spec with the given arguments.
fn format_spec(spec: &str, args: &[Value]) -> Result<String, String> {
    let chars: Vec<(usize, char)> = spec.char_indices().collect();
    let mut out = String::new();
    let mut next_arg = 1;
    let mut max_used = 0;
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        if matches!(chars.get(i + 1), Some((_, '%'))) {
            out.push('%');
            i += 2;
            continue;
        }
        let (verb, next) = parse_verb(spec, &chars, i, next_arg)?;
        i = next;
        if !"vtbdoxXeEfgGsq".contains(verb.mode) {
            return Err(format!("invalid format verb `{}`", verb.raw));
        }
        let Some(arg) = args.get(verb.arg - 1) else {
            return Err(format!(
                "not enough arguments for `{}` at offset {offset}: need argument {} but got {}",
                verb.raw,
                verb.arg,
                args.len()
            ));
        };
        max_used = max_used.max(verb.arg);
        next_arg = verb.arg + 1;
        out.push_str(&format_verb(&verb, arg)?);
    }
    if args.len() > max_used {
        return Err(format!(
            "too many arguments: only {max_used} used by format string, got {}",
            args.len()
        ));
    }
    Ok(out)
}

/// Parses the verb starting at `chars[start]` (a `%`); returns it and the index after it.
fn parse_verb(
    spec: &str,
    chars: &[(usize, char)],
    start: usize,
    next_arg: usize,
) -> Result<(Verb, usize), String> {
    let offset = chars[start].0;
    let mut verb = Verb {
        offset,
        arg: next_arg,
        ..Verb::default()
    };
    let mut j = start + 1;
    let peek = |j: usize| chars.get(j).map(|&(_, c)| c);
    let unterminated = || format!("unterminated format verb at offset {offset}");
    let read_digits = |j: &mut usize| -> Option<usize> {
        let begin = *j;
        let mut n: usize = 0;
        while let Some(d) = peek(*j).and_then(|c| c.to_digit(10)) {
            n = n.saturating_mul(10).saturating_add(d as usize);
            *j += 1;
        }
        (*j > begin).then_some(n)
    };
    while let Some(c) = peek(j) {
        match c {
            '0' => verb.zero = true,
            '#' => verb.sharp = true,
            '-' => verb.minus = true,
            '+' => verb.plus = true,
            ' ' => verb.space = true,
            _ => break,
        }
        j += 1;
    }
    if peek(j) == Some('[') {
        j += 1;
        let index = read_digits(&mut j).filter(|&n| n > 0);
        match (index, peek(j)) {
            (Some(n), Some(']')) => {
                verb.arg = n;
                j += 1;
            }
            (_, None) => return Err(unterminated()),
            _ => {
                return Err(format!(
                    "invalid argument index in format verb at offset {offset}"
                ))
            }
        }
    }
    verb.width = read_digits(&mut j);
    if peek(j) == Some('.') {
        j += 1;
        verb.precision = Some(read_digits(&mut j).unwrap_or(0));
    }
    for (what, n) in [("width", verb.width), ("precision", verb.precision)] {
        if let Some(n) = n.filter(|&n| n > FORMAT_WIDTH_LIMIT) {
            return Err(format!(
                "format {what} {n} at offset {offset} is too large (at most {FORMAT_WIDTH_LIMIT})"
            ));
        }
    }
    match peek(j) {
        None => Err(unterminated()),
        Some('*') => Err(format!(
            "`*` width and precision are not supported, at offset {offset}"
        )),
        Some(c) if c.is_ascii_alphabetic() => {
            verb.mode = c;
            let end = chars.get(j + 1).map_or(spec.len(), |&(o, _)| o);
            verb.raw = spec[offset..end].to_owned();
            Ok((verb, j + 1))
        }
        Some(c) => Err(format!(
            "unrecognized format character `{c}` at offset {}",
            chars[j].0
        )),
    }
}

/// Formats a single argument according to its verb.
fn format_verb(verb: &Verb, arg: &Value) -> Result<String, String> {
    let unsupported = |why: &str| {
        format!(
            "unsupported value for `{}` at offset {}: {why}",
            verb.raw, verb.offset
        )
    };
    if verb.mode != 'v' && arg.is_null() {
        return Err(unsupported("null value cannot be formatted"));
    }
    match verb.mode {
        'v' => {
            let text = match arg {
                Value::String(s) if !verb.sharp => s.clone(),
                Value::Number(n) if !verb.sharp => {
                    let (negative, digits, dp) = decimal_digits(n);
                    let body = go_g(&digits, dp, digits.len(), true, false);
                    if negative {
                        format!("-{body}")
                    } else {
                        body
                    }
                }
                other => json_string(other),
            };
            Ok(pad_text(verb, &text))
        }
        't' => {
            let b = value_bool(arg).ok_or_else(|| unsupported("a bool is required"))?;
            Ok(pad_text(verb, &b.to_string()))
        }
        'b' | 'd' | 'o' | 'x' | 'X' => {
            let n = value_number(arg).ok_or_else(|| unsupported("a number is required"))?;
            let i = number_i128(&n)
                .or_else(|| {
                    let f = number_f64(&n);
                    // Integral floats below 2^100 convert to i128 exactly.
                    #[allow(clippy::cast_possible_truncation)]
                    (f.fract() == 0.0 && f.abs() < 1.0e30).then_some(f as i128)
                })
                .ok_or_else(|| unsupported("an integer is required"))?;
            Ok(format_integer(verb, i))
        }
        'e' | 'E' | 'f' | 'g' | 'G' => {
            let n = value_number(arg).ok_or_else(|| unsupported("a number is required"))?;
            Ok(format_float(verb, number_f64(&n)))
        }
        's' | 'q' => {
            let s = primitive_string(arg).ok_or_else(|| unsupported("a string is required"))?;
            let s = match verb.precision {
                Some(p) if p > 0 => s.chars().take(p).collect(),
                _ => s,
            };
            let text = if verb.mode == 'q' {
                json_string(&Value::String(s))
            } else {
                s
            };
            Ok(pad_text(verb, &text))
        }
        other => Err(format!("invalid format verb `%{other}`")),
    }
}

/// Pads non-numeric output to the verb's width (zero flag pads with `0`, minus pads right).
fn pad_text(verb: &Verb, text: &str) -> String {
    let len = text.chars().count();
    let Some(width) = verb.width.filter(|&w| w > len) else {
        return text.to_owned();
    };
    let pad = (if verb.zero { "0" } else { " " }).repeat(width - len);
    if verb.minus {
        format!("{text}{pad}")
    } else {
        format!("{pad}{text}")
    }
}

/// Pads numeric output: zero padding goes between the sign/prefix and the digits.
fn pad_number(verb: &Verb, negative: bool, prefix: &str, digits: &str, allow_zero: bool) -> String {
    let sign = if negative {
        "-"
    } else if verb.plus {
        "+"
    } else if verb.space {
        " "
    } else {
        ""
    };
    let len = sign.len() + prefix.len() + digits.chars().count();
    let width = verb.width.unwrap_or(0);
    if width <= len {
        return format!("{sign}{prefix}{digits}");
    }
    let fill = width - len;
    if verb.minus {
        format!("{sign}{prefix}{digits}{}", " ".repeat(fill))
    } else if verb.zero && allow_zero {
        format!("{sign}{prefix}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{sign}{prefix}{digits}", " ".repeat(fill))
    }
}

/// Formats an integer for `%b %d %o %x %X`, with Go's precision (minimum digits) and `#` prefix.
fn format_integer(verb: &Verb, i: i128) -> String {
    let abs = i.unsigned_abs();
    let mut digits = match verb.mode {
        'b' => format!("{abs:b}"),
        'o' => format!("{abs:o}"),
        'x' => format!("{abs:x}"),
        'X' => format!("{abs:X}"),
        _ => abs.to_string(),
    };
    if let Some(p) = verb.precision {
        if p == 0 && abs == 0 {
            digits.clear();
        } else if digits.len() < p {
            digits = format!("{}{digits}", "0".repeat(p - digits.len()));
        }
    }
    let prefix = match (verb.sharp, verb.mode) {
        (true, 'b') => "0b",
        (true, 'o') => "0",
        (true, 'x') => "0x",
        (true, 'X') => "0X",
        _ => "",
    };
    pad_number(verb, i < 0, prefix, &digits, verb.precision.is_none())
}

/// Formats a float for `%e %E %f %g %G` like Go's `fmt` does.
fn format_float(verb: &Verb, f: f64) -> String {
    let abs = f.abs();
    let upper = verb.mode.is_ascii_uppercase();
    let body = match verb.mode {
        'f' => format!("{abs:.*}", verb.precision.unwrap_or(6)),
        'e' | 'E' => {
            let (digits, dp) = rounded_digits(abs, verb.precision.unwrap_or(6) + 1);
            go_e(&digits, dp, verb.precision.unwrap_or(6), upper)
        }
        _ => match verb.precision {
            None => {
                let (digits, dp) = shortest_digits(abs);
                go_g(&digits, dp, digits.len(), true, upper)
            }
            Some(p) => {
                let p = p.max(1);
                let (digits, dp) = rounded_digits(abs, p);
                let digits = digits.trim_end_matches('0').to_owned();
                let dp = if digits.is_empty() { 0 } else { dp };
                go_g(&digits, dp, p, false, upper)
            }
        },
    };
    pad_number(verb, f < 0.0, "", &body, true)
}

/// Shortest decimal digits of a number: `(negative, digits without trailing zeros, decimal point
/// position)`, so that the value is `0.<digits> * 10^dp`. Zero yields empty digits.
fn decimal_digits(number: &Number) -> (bool, String, i32) {
    if let Some(i) = number_i128(number) {
        let s = i.unsigned_abs().to_string();
        let dp = i32::try_from(s.len()).unwrap_or(i32::MAX);
        let digits = s.trim_end_matches('0').to_owned();
        return (i < 0, digits, if i == 0 { 0 } else { dp });
    }
    let f = number_f64(number);
    let (digits, dp) = shortest_digits(f.abs());
    (f < 0.0, digits, dp)
}

/// Digits of `abs` rounded to `count` significant digits, as `(digits, decimal point position)`.
fn rounded_digits(abs: f64, count: usize) -> (String, i32) {
    split_exp(&format!("{:.*e}", count.saturating_sub(1), abs))
}

/// Shortest round-tripping digits of `abs` (e.g. `0.1` gives `("1", 0)`).
fn shortest_digits(abs: f64) -> (String, i32) {
    // `{:e}` yields the shortest round-tripping digits, e.g. `1.2345e-7`.
    split_exp(&format!("{abs:e}"))
}

/// Splits Rust's `{:e}` output (`d.ddde±x`) into digits and decimal point position.
fn split_exp(s: &str) -> (String, i32) {
    let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return (String::new(), 0);
    }
    (digits, exp + 1)
}

/// Go's `%e` layout from digits: `d.ddd` with `frac` fraction digits, then `e±XX`.
fn go_e(digits: &str, dp: i32, frac: usize, upper: bool) -> String {
    let mut out = String::new();
    let mut it = digits.chars();
    out.push(it.next().unwrap_or('0'));
    if frac > 0 {
        out.push('.');
        for _ in 0..frac {
            out.push(it.next().unwrap_or('0'));
        }
    }
    let exp = if digits.is_empty() { 0 } else { dp - 1 };
    out.push(if upper { 'E' } else { 'e' });
    out.push(if exp < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exp.unsigned_abs()));
    out
}

/// Go's `%f` layout from (already rounded) digits with `frac` fraction digits.
fn go_f(digits: &str, dp: i32, frac: usize) -> String {
    let digits: Vec<char> = digits.chars().collect();
    let digit_at = |i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or('0')
    };
    let mut out = String::new();
    if dp <= 0 {
        out.push('0');
    } else {
        for i in 0..dp {
            out.push(digit_at(i));
        }
    }
    if frac > 0 {
        out.push('.');
        for i in 0..i32::try_from(frac).unwrap_or(0) {
            out.push(digit_at(dp + i));
        }
    }
    out
}

/// Go's `%g` choice between `%e` and `%f` layouts (`shortest` mirrors precision `-1`).
fn go_g(digits: &str, dp: i32, precision: usize, shortest: bool, upper: bool) -> String {
    let nd = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let prec = i32::try_from(precision).unwrap_or(i32::MAX);
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        let p = prec.min(nd).max(1);
        return go_e(digits, dp, usize::try_from(p - 1).unwrap_or(0), upper);
    }
    let p = if prec > dp { nd } else { prec };
    go_f(digits, dp, usize::try_from(p - dp).unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Collection functions
// ---------------------------------------------------------------------------------------------

/// `length(string|list|object) -> number`: Terraform's `length`.
fn length(args: FuncArgs) -> FnResult {
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        other => {
            return Err(format!(
                "cannot take the length of a {} value",
                type_name(other)
            ))
        }
    };
    Ok(Value::from(n))
}

/// `concat(list...) -> list`: Terraform's `concat`, joins lists end to end.
fn concat(args: FuncArgs) -> FnResult {
    if args.is_empty() {
        return Err("at least one argument is required".to_owned());
    }
    let mut out = Vec::new();
    for list in args.iter() {
        out.extend_from_slice(list_arg(list)?);
    }
    Ok(Value::Array(out))
}

/// `contains(list, value) -> bool`: Terraform's `contains`.
fn contains(args: FuncArgs) -> FnResult {
    Ok(Value::from(list_arg(&args[0])?.contains(&args[1])))
}

/// Removes duplicates from `items`, keeping the first occurrence of each value.
fn dedupe(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

/// `distinct(list) -> list`: Terraform's `distinct`, drops repeated elements (first one wins).
fn distinct(args: FuncArgs) -> FnResult {
    Ok(Value::Array(dedupe(list_arg(&args[0])?)))
}

/// `element(list, index) -> any`: Terraform's `element`, indexes with wrap-around.
fn element(args: FuncArgs) -> FnResult {
    let items = list_arg(&args[0])?;
    let index = whole_arg(&args[1], "index")?;
    if items.is_empty() {
        return Err("cannot use element function with an empty list".to_owned());
    }
    let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
    let i = usize::try_from(index.rem_euclid(len)).unwrap_or(0);
    Ok(items[i].clone())
}

/// `flatten(list) -> list`: Terraform's `flatten`, recursively inlines nested lists.
fn flatten(args: FuncArgs) -> FnResult {
    fn walk(items: &[Value], out: &mut Vec<Value>) {
        for item in items {
            match item {
                Value::Array(inner) => walk(inner, out),
                other => out.push(other.clone()),
            }
        }
    }
    let mut out = Vec::new();
    walk(list_arg(&args[0])?, &mut out);
    Ok(Value::Array(out))
}

/// Object entries sorted lexicographically by key, the order Terraform uses for maps.
fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// `keys(map) -> list(string)`: Terraform's `keys`, in lexicographic order.
fn keys(args: FuncArgs) -> FnResult {
    let entries = sorted_entries(map_arg(&args[0])?);
    Ok(Value::Array(
        entries
            .into_iter()
            .map(|(k, _)| Value::from(k.as_str()))
            .collect(),
    ))
}

/// `values(map) -> list`: Terraform's `values`, ordered like `keys`.
fn values(args: FuncArgs) -> FnResult {
    let entries = sorted_entries(map_arg(&args[0])?);
    Ok(Value::Array(
        entries.into_iter().map(|(_, v)| v.clone()).collect(),
    ))
}

/// `lookup(map, key[, default]) -> any`: Terraform's `lookup`.
fn lookup(args: FuncArgs) -> FnResult {
    if args.len() > 3 {
        return Err(format!("expected 2 or 3 arguments, got {}", args.len()));
    }
    let map = map_arg(&args[0])?;
    let key = string_arg(&args[1])?;
    match (map.get(key), args.get(2)) {
        (Some(value), _) => Ok(value.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!("lookup failed to find key `{key}`")),
    }
}

/// `merge(map...) -> map`: Terraform's `merge`; later keys win, null arguments are skipped.
fn merge(args: FuncArgs) -> FnResult {
    let mut out = Map::new();
    for arg in args.iter().filter(|a| !a.is_null()) {
        for (k, v) in map_arg(arg)? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}

/// `range([start,] limit[, step]) -> list(number)`: Terraform's `range`.
fn range(args: FuncArgs) -> FnResult {
    let nums = args.iter().map(number_arg).collect::<Result<Vec<_>, _>>()?;
    let (start, limit, step) = match nums.as_slice() {
        [limit] => (Number::from(0), **limit, None),
        [start, limit] => (**start, **limit, None),
        [start, limit, step] => (**start, **limit, Some(**step)),
        _ => return Err(format!("expected 1 to 3 arguments, got {}", nums.len())),
    };
    let (start, limit) = (number_f64(&start), number_f64(&limit));
    let step = match step {
        Some(step) => number_f64(&step),
        None if limit < start => -1.0,
        None => 1.0,
    };
    if step == 0.0 {
        return Err("step must not be zero".to_owned());
    }
    let mut out = Vec::new();
    loop {
        #[allow(clippy::cast_precision_loss)]
        let value = start + step * out.len() as f64;
        let done = if step > 0.0 {
            value >= limit
        } else {
            value <= limit
        };
        if done {
            break;
        }
        if out.len() == RANGE_LIMIT {
            return Err(format!(
                "more than {RANGE_LIMIT} values were generated; use a smaller range or a larger step"
            ));
        }
        out.push(float_value(value)?);
    }
    Ok(Value::Array(out))
}

/// `reverse(list) -> list`: Terraform's `reverse`.
fn reverse(args: FuncArgs) -> FnResult {
    Ok(Value::Array(
        list_arg(&args[0])?.iter().rev().cloned().collect(),
    ))
}

/// `slice(list, start, end) -> list`: Terraform's `slice`, `start` inclusive, `end` exclusive.
fn slice(args: FuncArgs) -> FnResult {
    let items = list_arg(&args[0])?;
    let start = whole_arg(&args[1], "start index")?;
    let end = whole_arg(&args[2], "end index")?;
    let start = usize::try_from(start)
        .map_err(|_| format!("start index must not be negative, got `{start}`"))?;
    let end =
        usize::try_from(end).map_err(|_| format!("end index must not be negative, got `{end}`"))?;
    if end > items.len() {
        return Err(format!(
            "end index `{end}` is greater than the length of the list ({})",
            items.len()
        ));
    }
    if start > end {
        return Err(format!(
            "start index `{start}` is greater than end index `{end}`"
        ));
    }
    Ok(Value::Array(items[start..end].to_vec()))
}

/// Converts list elements to strings, as Terraform does for `list(string)` parameters.
fn string_elements(items: &[Value]) -> Result<Vec<String>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Null => Err(format!("element {i} is null")),
            other => primitive_string(other)
                .ok_or_else(|| format!("element {i} is a {}, not a string", type_name(other))),
        })
        .collect()
}

/// `sort(list(string)) -> list(string)`: Terraform's `sort`, lexicographic order.
fn sort(args: FuncArgs) -> FnResult {
    let mut items = string_elements(list_arg(&args[0])?)?;
    items.sort();
    Ok(Value::Array(items.into_iter().map(Value::from).collect()))
}

/// `toset(list) -> list`: Terraform's `toset`; removes duplicates and orders like Terraform's
/// sets (strings lexicographically, numbers numerically, `false` before `true`).
fn toset(args: FuncArgs) -> FnResult {
    let items = list_arg(&args[0])?;
    if items.iter().any(Value::is_null) {
        return Err("set elements must not be null".to_owned());
    }
    let all = |pred: fn(&Value) -> bool| items.iter().all(pred);
    if all(Value::is_number) {
        let mut out = dedupe(items);
        out.sort_by(|a, b| {
            let (a, b) = (a.as_number(), b.as_number());
            a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
        });
        Ok(Value::Array(out))
    } else if all(Value::is_boolean) {
        let mut out = dedupe(items);
        out.sort_by_key(|v| v.as_bool());
        Ok(Value::Array(out))
    } else if all(|v| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))) {
        // Mixed primitives unify to strings, as in Terraform.
        let mut strings = string_elements(items)?;
        strings.sort();
        strings.dedup();
        Ok(Value::Array(strings.into_iter().map(Value::from).collect()))
    } else {
        Ok(Value::Array(dedupe(items)))
    }
}

/// `tolist(list) -> list`: Terraform's `tolist` (lists pass through, null stays null).
fn tolist(args: FuncArgs) -> FnResult {
    Ok(args[0].clone())
}

/// `tomap(object) -> map`: Terraform's `tomap` (objects pass through, null stays null).
fn tomap(args: FuncArgs) -> FnResult {
    Ok(args[0].clone())
}

/// `coalesce(any...) -> any`: Terraform's `coalesce`, first argument not null or `""`.
fn coalesce(args: FuncArgs) -> FnResult {
    args.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".to_owned())
}

/// `coalescelist(list...) -> list`: Terraform's `coalescelist`, first non-empty list.
fn coalescelist(args: FuncArgs) -> FnResult {
    args.iter()
        .find(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
        .ok_or_else(|| "no non-empty list arguments".to_owned())
}

/// `compact(list(string)) -> list(string)`: Terraform's `compact`, drops nulls and `""`.
fn compact(args: FuncArgs) -> FnResult {
    let items: Vec<Value> = list_arg(&args[0])?
        .iter()
        .filter(|v| !v.is_null())
        .cloned()
        .collect();
    let strings = string_elements(&items)?;
    Ok(Value::Array(
        strings
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(Value::from)
            .collect(),
    ))
}

/// `zipmap(list(string), list) -> map`: Terraform's `zipmap`, pairs keys with values.
fn zipmap(args: FuncArgs) -> FnResult {
    let keys = list_arg(&args[0])?;
    let values = list_arg(&args[1])?;
    if keys.len() != values.len() {
        return Err(format!(
            "number of keys ({}) does not match number of values ({})",
            keys.len(),
            values.len()
        ));
    }
    let mut out = Map::new();
    for (k, v) in keys.iter().zip(values) {
        out.insert(string_arg(k)?.to_owned(), v.clone());
    }
    Ok(Value::Object(out))
}

/// `index(list, value) -> number`: Terraform's `index`, position of the first match.
fn index(args: FuncArgs) -> FnResult {
    list_arg(&args[0])?
        .iter()
        .position(|v| *v == args[1])
        .map(Value::from)
        .ok_or_else(|| format!("item {} not found", describe(&args[1])))
}

/// `one(list) -> any`: Terraform's `one`; null for an empty list, the element for one element.
fn one(args: FuncArgs) -> FnResult {
    match list_arg(&args[0])? {
        [] => Ok(Value::Null),
        [single] => Ok(single.clone()),
        many => Err(format!(
            "must be a list with either zero or one elements, got {}",
            many.len()
        )),
    }
}

/// `sum(list(number)) -> number`: Terraform's `sum`.
fn sum(args: FuncArgs) -> FnResult {
    let items = list_arg(&args[0])?;
    if items.is_empty() {
        return Err("cannot sum an empty list".to_owned());
    }
    let mut int_total: Option<i128> = Some(0);
    let mut float_total = 0.0;
    for (i, item) in items.iter().enumerate() {
        let n = value_number(item)
            .ok_or_else(|| format!("element {i} is not a number: {}", describe(item)))?;
        float_total += number_f64(&n);
        int_total = int_total.and_then(|t| number_i128(&n).and_then(|n| t.checked_add(n)));
    }
    match int_total {
        Some(total) => Ok(int_value(total)),
        None => float_value(float_total),
    }
}

/// Picks the extreme of the numeric arguments; `want` is the ordering that replaces the current.
fn extreme(args: &FuncArgs, want: std::cmp::Ordering) -> FnResult {
    let mut best: Option<Number> = None;
    for arg in args.iter() {
        let n = *number_arg(arg)?;
        let replace = match best {
            None => true,
            Some(b) => n.partial_cmp(&b) == Some(want),
        };
        if replace {
            best = Some(n);
        }
    }
    best.map(Value::Number)
        .ok_or_else(|| "must pass at least one number".to_owned())
}

/// `min(number...) -> number`: Terraform's `min`.
fn min(args: FuncArgs) -> FnResult {
    extreme(&args, std::cmp::Ordering::Less)
}

/// `max(number...) -> number`: Terraform's `max`.
fn max(args: FuncArgs) -> FnResult {
    extreme(&args, std::cmp::Ordering::Greater)
}

/// Converts list elements to bools for `alltrue`/`anytrue`.
fn bool_elements(items: &[Value]) -> Result<Vec<bool>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            value_bool(v).ok_or_else(|| format!("element {i} is not a bool: {}", describe(v)))
        })
        .collect()
}

/// `alltrue(list(bool)) -> bool`: Terraform's `alltrue` (true for an empty list).
fn alltrue(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        bool_elements(list_arg(&args[0])?)?.into_iter().all(|b| b),
    ))
}

/// `anytrue(list(bool)) -> bool`: Terraform's `anytrue` (false for an empty list).
fn anytrue(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        bool_elements(list_arg(&args[0])?)?.into_iter().any(|b| b),
    ))
}

/// `chunklist(list, size) -> list(list)`: Terraform's `chunklist`; size 0 keeps one chunk.
fn chunklist(args: FuncArgs) -> FnResult {
    let items = list_arg(&args[0])?;
    let size = whole_arg(&args[1], "size")?;
    let size =
        usize::try_from(size).map_err(|_| format!("size must not be negative, got `{size}`"))?;
    if items.is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(items.to_vec())]));
    }
    Ok(Value::Array(
        items
            .chunks(size)
            .map(|chunk| Value::Array(chunk.to_vec()))
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Type conversion functions
// ---------------------------------------------------------------------------------------------

/// `tostring(any) -> string`: Terraform's `tostring`; primitives only, null stays null.
fn tostring(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        other => primitive_string(other)
            .map(Value::from)
            .ok_or_else(|| format!("cannot convert {} to string", type_name(other))),
    }
}

/// `tonumber(any) -> number`: Terraform's `tonumber`; numbers and numeric strings.
fn tonumber(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        other => value_number(other)
            .map(Value::Number)
            .ok_or_else(|| format!("cannot convert {} to number", describe(other))),
    }
}

/// `tobool(any) -> bool`: Terraform's `tobool`; bools and the strings `"true"`/`"false"`.
fn tobool(args: FuncArgs) -> FnResult {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        other => value_bool(other)
            .map(Value::Bool)
            .ok_or_else(|| format!("cannot convert {} to bool", describe(other))),
    }
}

// ---------------------------------------------------------------------------------------------
// Numeric functions
// ---------------------------------------------------------------------------------------------

/// `abs(number) -> number`: Terraform's `abs`.
fn abs(args: FuncArgs) -> FnResult {
    let n = *number_arg(&args[0])?;
    Ok(Value::Number(if n < Number::from(0) { -n } else { n }))
}

/// `ceil(number) -> number`: Terraform's `ceil`, the closest whole number not less than it.
fn ceil(args: FuncArgs) -> FnResult {
    let n = number_arg(&args[0])?;
    if n.is_f64() {
        float_value(number_f64(n).ceil())
    } else {
        Ok(Value::Number(*n))
    }
}

/// `floor(number) -> number`: Terraform's `floor`, the closest whole number not greater than it.
fn floor(args: FuncArgs) -> FnResult {
    let n = number_arg(&args[0])?;
    if n.is_f64() {
        float_value(number_f64(n).floor())
    } else {
        Ok(Value::Number(*n))
    }
}

/// `parseint(string, base) -> number`: Terraform's `parseint`, bases 2 through 62.
fn parseint(args: FuncArgs) -> FnResult {
    let s = string_arg(&args[0])?;
    let base = whole_arg(&args[1], "base")?;
    let base = u32::try_from(base)
        .ok()
        .filter(|b| (2..=62).contains(b))
        .ok_or_else(|| {
            format!("base must be a whole number between 2 and 62 inclusive, got `{base}`")
        })?;
    let invalid = || format!("cannot parse `{s}` as a base {base} integer");
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    for c in digits.chars() {
        // Go's big.Int digit values: case-insensitive up to base 36, then a-z < A-Z.
        let d = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 10,
            'A'..='Z' if base <= 36 => c as u32 - 'A' as u32 + 10,
            'A'..='Z' => c as u32 - 'A' as u32 + 36,
            _ => return Err(invalid()),
        };
        if d >= base {
            return Err(invalid());
        }
        total = total
            .checked_mul(i128::from(base))
            .and_then(|t| t.checked_add(i128::from(d)))
            .ok_or_else(|| format!("`{s}` is too large to parse as an integer"))?;
    }
    Ok(int_value(if negative { -total } else { total }))
}

/// `pow(base, exponent) -> number`: Terraform's `pow`.
fn pow(args: FuncArgs) -> FnResult {
    let base = number_f64(number_arg(&args[0])?);
    let exp = number_f64(number_arg(&args[1])?);
    float_value(base.powf(exp))
}

/// `signum(number) -> number`: Terraform's `signum`, -1, 0 or 1.
fn signum(args: FuncArgs) -> FnResult {
    let n = number_arg(&args[0])?;
    let zero = Number::from(0);
    Ok(Value::from(match n.partial_cmp(&zero) {
        Some(std::cmp::Ordering::Less) => -1,
        Some(std::cmp::Ordering::Greater) => 1,
        _ => 0,
    }))
}

// ---------------------------------------------------------------------------------------------
// Encoding functions
// ---------------------------------------------------------------------------------------------

/// Appends `s` as a JSON string literal, escaping like Go's `encoding/json` (HTML-safe).
fn json_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends the compact JSON encoding of `value`, with object keys sorted like Terraform's.
fn json_encode(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_to_string(n)),
        Value::String(s) => json_quote(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_encode(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in sorted_entries(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_quote(k, out);
                out.push(':');
                json_encode(v, out);
            }
            out.push('}');
        }
    }
}

/// The compact JSON encoding of `value`.
fn json_string(value: &Value) -> String {
    let mut out = String::new();
    json_encode(value, &mut out);
    out
}

/// `jsonencode(any) -> string`: Terraform's `jsonencode`.
fn jsonencode(args: FuncArgs) -> FnResult {
    Ok(Value::from(json_string(&args[0])))
}

/// `jsondecode(string) -> any`: Terraform's `jsondecode`.
fn jsondecode(args: FuncArgs) -> FnResult {
    serde_json::from_str::<Value>(string_arg(&args[0])?)
        .map_err(|err| format!("invalid JSON: {err}"))
}

/// `yamldecode(string) -> any`: Terraform's `yamldecode` (one YAML 1.2 document, through
/// `serde_yaml`); map keys must be strings.
fn yamldecode(args: FuncArgs) -> FnResult {
    serde_yaml::from_str::<Value>(string_arg(&args[0])?)
        .map_err(|err| format!("invalid YAML: {err}"))
}

/// Largest file `file` reads, in bytes (4 MiB): far above any manifest or policy, small enough
/// that a wrong path (a log, a disk image) is an error rather than a memory spike.
const FILE_LIMIT: u64 = 4 << 20;

/// `file(path) -> string`: Terraform's `file`: the contents of a UTF-8 text file. A relative
/// path is relative to the working directory, as in Terraform; write
/// `file("${path.module}/deployment.yaml")` for a file beside the configuration. Errors: no such
/// file, not readable, larger than [`FILE_LIMIT`], or not UTF-8 — each naming the path.
fn file(args: FuncArgs) -> FnResult {
    let path = string_arg(&args[0])?;
    let meta = std::fs::metadata(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => format!("no file exists at `{path}`"),
        _ => format!("cannot read `{path}`: {err}"),
    })?;
    if meta.is_dir() {
        return Err(format!("`{path}` is a directory, not a file"));
    }
    if meta.len() > FILE_LIMIT {
        return Err(format!(
            "`{path}` has {} bytes, more than file() reads ({FILE_LIMIT} bytes)",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read `{path}`: {err}"))?;
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| format!("contents of `{path}` are not valid UTF-8; file() reads text only"))
}

/// `base64encode(string) -> string`: Terraform's `base64encode` (standard alphabet, padded).
fn base64encode(args: FuncArgs) -> FnResult {
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(string_arg(&args[0])?),
    ))
}

/// `base64decode(string) -> string`: Terraform's `base64decode`; the result must be UTF-8.
fn base64decode(args: FuncArgs) -> FnResult {
    let s = string_arg(&args[0])?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|err| format!("failed to decode base64 data `{s}`: {err}"))?;
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| "the result of decoding the provided string is not valid UTF-8".to_owned())
}

/// `urlencode(string) -> string`: Terraform's `urlencode` (Go's `url.QueryEscape`).
fn urlencode(args: FuncArgs) -> FnResult {
    let mut out = String::new();
    for b in string_arg(&args[0])?.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(Value::from(out))
}

// ---------------------------------------------------------------------------------------------
// Hash functions
// ---------------------------------------------------------------------------------------------

/// `sha256(string) -> string`: Terraform's `sha256`, lowercase hex digest.
fn sha256(args: FuncArgs) -> FnResult {
    Ok(Value::from(hex(&sha2::Sha256::digest(string_arg(
        &args[0],
    )?))))
}

/// `sha512(string) -> string`: Terraform's `sha512`, lowercase hex digest.
fn sha512(args: FuncArgs) -> FnResult {
    Ok(Value::from(hex(&sha2::Sha512::digest(string_arg(
        &args[0],
    )?))))
}

/// `base64sha256(string) -> string`: Terraform's `base64sha256`, base64 of the raw digest.
fn base64sha256(args: FuncArgs) -> FnResult {
    let digest = sha2::Sha256::digest(string_arg(&args[0])?);
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(digest),
    ))
}

/// `base64sha512(string) -> string`: Terraform's `base64sha512`, base64 of the raw digest.
fn base64sha512(args: FuncArgs) -> FnResult {
    let digest = sha2::Sha512::digest(string_arg(&args[0])?);
    Ok(Value::from(
        base64::engine::general_purpose::STANDARD.encode(digest),
    ))
}

// ---------------------------------------------------------------------------------------------
// Time functions
// ---------------------------------------------------------------------------------------------

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Parses an RFC 3339 timestamp, keeping its UTC offset.
fn parse_timestamp(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|err| format!("not a valid RFC3339 timestamp `{s}`: {err}"))
}

/// Formats a UTC offset as `±hh:mm` (`colon`) or `±hhmm`.
fn offset_string(offset: &FixedOffset, colon: bool) -> String {
    let secs = offset.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let mins = secs.unsigned_abs() / 60;
    let sep = if colon { ":" } else { "" };
    format!("{sign}{:02}{sep}{:02}", mins / 60, mins % 60)
}

/// Formats a timestamp like Go's `time.RFC3339`: whole seconds, `Z` for a zero offset.
fn rfc3339(dt: &DateTime<FixedOffset>) -> String {
    let zone = if dt.offset().local_minus_utc() == 0 {
        "Z".to_owned()
    } else {
        offset_string(dt.offset(), true)
    };
    format!("{}{zone}", dt.format("%Y-%m-%dT%H:%M:%S"))
}

/// `timestamp() -> string`: Terraform's `timestamp`, the current UTC time in RFC 3339.
fn timestamp(_args: FuncArgs) -> FnResult {
    Ok(Value::from(
        Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    ))
}

/// `formatdate(spec, timestamp) -> string`: Terraform's `formatdate`.
fn formatdate(args: FuncArgs) -> FnResult {
    let spec = string_arg(&args[0])?;
    let t = parse_timestamp(string_arg(&args[1])?)?;
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // `''` is a literal quote; otherwise quote until the closing `'`, with `''` escapes.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            let mut closed = false;
            while j < chars.len() {
                if chars[j] == '\'' {
                    if chars.get(j + 1) == Some(&'\'') {
                        out.push('\'');
                        j += 2;
                        continue;
                    }
                    closed = true;
                    j += 1;
                    break;
                }
                out.push(chars[j]);
                j += 1;
            }
            if !closed {
                return Err("unterminated literal `'`".to_owned());
            }
            i = j;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let token: String = std::iter::repeat_n(c, n).collect();
        let bad = |hint: &str| format!("invalid date format verb `{token}`: {hint}");
        let pad = |v: u32| {
            if n == 2 {
                format!("{v:02}")
            } else {
                v.to_string()
            }
        };
        match (c, n) {
            ('Y', 2) => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
            ('Y', 4) => out.push_str(&format!("{:04}", t.year())),
            ('Y', _) => return Err(bad("year must either be `YY` or `YYYY`")),
            ('M', 1 | 2) => out.push_str(&pad(t.month())),
            ('M', 3) => out.push_str(&MONTHS[t.month0() as usize][..3]),
            ('M', 4) => out.push_str(MONTHS[t.month0() as usize]),
            ('M', _) => return Err(bad("month must be `M`, `MM`, `MMM`, or `MMMM`")),
            ('D', 1 | 2) => out.push_str(&pad(t.day())),
            ('D', _) => return Err(bad("day of month must either be `D` or `DD`")),
            ('E', 3) => {
                out.push_str(&WEEKDAYS[t.weekday().num_days_from_monday() as usize][..3]);
            }
            ('E', 4) => out.push_str(WEEKDAYS[t.weekday().num_days_from_monday() as usize]),
            ('E', _) => return Err(bad("day of week must either be `EEE` or `EEEE`")),
            ('h', 1 | 2) => out.push_str(&pad(t.hour())),
            ('h', _) => return Err(bad("24-hour must either be `h` or `hh`")),
            ('H', 1 | 2) => out.push_str(&pad(match t.hour() % 12 {
                0 => 12,
                h => h,
            })),
            ('H', _) => return Err(bad("12-hour must either be `H` or `HH`")),
            ('A', 2) => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
            ('a', 2) => out.push_str(if t.hour() < 12 { "am" } else { "pm" }),
            ('A' | 'a', _) => return Err(bad(&format!("must be `{c}{c}`"))),
            ('m', 1 | 2) => out.push_str(&pad(t.minute())),
            ('m', _) => return Err(bad("minute must either be `m` or `mm`")),
            ('s', 1 | 2) => out.push_str(&pad(t.second())),
            ('s', _) => return Err(bad("second must either be `s` or `ss`")),
            ('Z', 1) => {
                if t.offset().local_minus_utc() == 0 {
                    out.push('Z');
                } else {
                    out.push_str(&offset_string(t.offset(), true));
                }
            }
            ('Z', 3) => {
                if t.offset().local_minus_utc() == 0 {
                    out.push_str("UTC");
                } else {
                    out.push_str(&offset_string(t.offset(), false));
                }
            }
            ('Z', 4) => out.push_str(&offset_string(t.offset(), false)),
            ('Z', 5) => out.push_str(&offset_string(t.offset(), true)),
            ('Z', _) => return Err(bad("timezone must be `Z`, `ZZZ`, `ZZZZ`, or `ZZZZZ`")),
            _ => {
                return Err(format!(
                    "invalid date format verb `{token}`: quote literal letters with `'`"
                ))
            }
        }
    }
    Ok(Value::from(out))
}

/// Parses a Go duration string (`"1h30m"`, `"-10m"`, `"1.5s"`) into nanoseconds.
fn parse_duration(input: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration `{input}`");
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(len)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale: f64 = match unit {
            "" => return Err(format!("missing unit in duration `{input}`")),
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("unknown unit `{other}` in duration `{input}`")),
        };
        let amount: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            frac_part
        )
        .trim_end_matches('.')
        .parse()
        .map_err(|_| invalid())?;
        total += amount * scale;
        rest = after;
    }
    // Go limits durations to what fits in an i64 of nanoseconds (about 292 years).
    if !total.is_finite() || total >= 9.2e18 {
        return Err(invalid());
    }
    #[allow(clippy::cast_possible_truncation)]
    let nanos = total.round() as i64;
    Ok(if negative { -nanos } else { nanos })
}

/// `timeadd(timestamp, duration) -> string`: Terraform's `timeadd`, Go-style durations.
fn timeadd(args: FuncArgs) -> FnResult {
    let t = parse_timestamp(string_arg(&args[0])?)?;
    let nanos = parse_duration(string_arg(&args[1])?)?;
    let sum = t
        .checked_add_signed(chrono::Duration::nanoseconds(nanos))
        .ok_or_else(|| "resulting timestamp is out of range".to_owned())?;
    Ok(Value::from(rfc3339(&sum)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::{ErrorKind, Evaluate};
    use hcl::Expression;

    /// A context with every function declared.
    fn context() -> Context<'static> {
        let mut ctx = Context::new();
        declare_all(&mut ctx);
        ctx
    }

    fn parse(src: &str) -> Expression {
        src.parse()
            .unwrap_or_else(|err| panic!("cannot parse `{src}`: {err}"))
    }

    /// Evaluates an HCL expression that must succeed.
    fn eval(src: &str) -> Value {
        parse(src)
            .evaluate(&context())
            .unwrap_or_else(|err| panic!("`{src}` failed: {err}"))
    }

    /// Evaluates an HCL expression that must fail in a function call; returns the message.
    fn err(src: &str) -> String {
        match parse(src).evaluate(&context()) {
            Ok(value) => panic!("`{src}` unexpectedly returned `{value}`"),
            Err(err) => match err.kind() {
                ErrorKind::FuncCall(_, msg) => msg.clone(),
                other => panic!("`{src}` failed with a non-call error: {other}"),
            },
        }
    }

    /// Evaluates a function-free HCL literal, for expected values.
    fn lit(src: &str) -> Value {
        parse(src)
            .evaluate(&Context::new())
            .unwrap_or_else(|err| panic!("literal `{src}` failed: {err}"))
    }

    /// Asserts that `src` evaluates to the HCL literal `expected`.
    #[track_caller]
    fn check(src: &str, expected: &str) {
        assert_eq!(eval(src), lit(expected), "evaluating `{src}`");
    }

    /// Asserts that `src` evaluates to the string `expected`.
    #[track_caller]
    fn check_str(src: &str, expected: &str) {
        assert_eq!(eval(src), Value::from(expected), "evaluating `{src}`");
    }

    #[test]
    fn case_and_trimming() {
        check_str(r#"upper("hello wörld")"#, "HELLO WÖRLD");
        check_str(r#"lower("HeLLo")"#, "hello");
        check_str(r#"title("hello world-foo_bar")"#, "Hello World-Foo_bar");
        check_str(r#"trimspace("  \n hi there \t")"#, "hi there");
        check_str(r#"trim("?!hello?!", "!?")"#, "hello");
        check_str(r#"trimprefix("helloworld", "hello")"#, "world");
        check_str(r#"trimprefix("world", "hello")"#, "world");
        check_str(r#"trimsuffix("helloworld", "world")"#, "hello");
        check_str(r#"chomp("hello\n\r\n")"#, "hello");
        check_str(r#"chomp("a\nb")"#, "a\nb");
        check_str(r#"indent(2, "a\nb\n")"#, "a\n  b\n  ");
        assert_eq!(
            err(r#"indent(-1, "a")"#),
            "spaces must not be negative, got `-1`"
        );
    }

    #[test]
    fn replace_split_join() {
        check_str(r#"replace("1 + 2 + 3", "+", "-")"#, "1 - 2 - 3");
        check_str(r#"replace("a/b", "/", "_")"#, "a_b");
        assert_eq!(
            err(r#"replace("abc", "/b/", "x")"#),
            "regular expression patterns are not supported, got `/b/`"
        );
        check(r#"split(",", "a,b,,c")"#, r#"["a", "b", "", "c"]"#);
        check(r#"split(",", "")"#, r#"[""]"#);
        check(r#"split("", "ab")"#, r#"["a", "b"]"#);
        check_str(r#"join("-", ["a", "b"], ["c"])"#, "a-b-c");
        check_str(r#"join(",", [1, true, "x"])"#, "1,true,x");
        check_str(r#"join(",", [])"#, "");
        assert_eq!(err(r#"join(",")"#), "at least one list is required");
        assert_eq!(
            err(r#"join(",", ["a", null])"#),
            "element 1 is null; cannot concatenate null values"
        );
        assert_eq!(
            err(r#"join(",", [["a"]])"#),
            "element 0 is a list, not a string"
        );
    }

    #[test]
    fn substrings_and_predicates() {
        check_str(r#"substr("hello world", 1, 4)"#, "ello");
        check_str(r#"substr("hello world", -5, -1)"#, "world");
        check_str(r#"substr("hello", -3, 2)"#, "ll");
        check_str(r#"substr("hello", 10, 2)"#, "");
        check_str(r#"substr("hello", 2, 0)"#, "");
        check_str(r#"substr("hello", 3, 100)"#, "lo");
        check_str(r#"substr("héllo", 1, 1)"#, "é");
        assert_eq!(
            err(r#"substr("abc", 1, 1.5)"#),
            "length must be a whole number, got `1.5`"
        );
        check_str(r#"strrev("héllo")"#, "olléh");
        check(r#"startswith("hello", "he")"#, "true");
        check(r#"startswith("hello", "lo")"#, "false");
        check(r#"endswith("hello", "lo")"#, "true");
        check(r#"endswith("hello", "he")"#, "false");
        check(r#"strcontains("hello", "ell")"#, "true");
        check(r#"strcontains("hello", "xyz")"#, "false");
    }

    #[test]
    fn format_width_and_precision_are_bounded() {
        for src in [
            r#"format("%.99999f", 1)"#,
            r#"format("%999999999d", 1)"#,
            r#"format("%99999999999999999999999s", "x")"#,
            r#"format("%.70000e", 1)"#,
            r#"indent(999999999, "a
b")"#,
        ] {
            let e = err(src);
            assert!(e.contains("at most 10000"), "{src}: {e}");
        }
        check_str(
            r#"format("%5d|%-4s|%.3f", 42, "ab", 1)"#,
            "   42|ab  |1.000",
        );
        assert_eq!(eval(r#"length(format("%10000d", 1))"#), Value::from(10000));
    }

    #[test]
    fn format_basic_verbs() {
        check_str(r#"format("Hello, %s!", "Ander")"#, "Hello, Ander!");
        check_str(r#"format("There are %d lights", 4)"#, "There are 4 lights");
        check_str(r#"format("%.2f", 3.14159)"#, "3.14");
        check_str(r#"format("%f", 1.5)"#, "1.500000");
        check_str(r#"format("%.0f", 2.5)"#, "2");
        check_str(r#"format("%t/%t", true, "false")"#, "true/false");
        check_str(r#"format("100%%")"#, "100%");
        check_str(r#"format("%s|%s", 12, true)"#, "12|true");
        check_str(r#"format("%d", "12")"#, "12");
        check_str(r#"format("%q", "a\"b<")"#, r#""a\"b\u003c""#);
        check_str(r#"format("%[2]s %[1]s %s", "a", "b")"#, "b a b");
    }

    #[test]
    fn format_v_verb() {
        check_str(
            r#"format("%v %v %v %v", "s", 1.5, true, null)"#,
            "s 1.5 true null",
        );
        check_str(r#"format("%v", [1, "a"])"#, r#"[1,"a"]"#);
        check_str(r#"format("%v", {b = 1, a = 2})"#, r#"{"a":2,"b":1}"#);
        check_str(r#"format("%#v", "a")"#, r#""a""#);
        // Numbers use Go's shortest `%g`, exactly like Terraform.
        check_str(r#"format("%v", 123456)"#, "123456");
        check_str(r#"format("%v", 1000000)"#, "1e+06");
        check_str(r#"format("%v", -0.00001)"#, "-1e-05");
        check_str(r#"format("%v", 0.0001)"#, "0.0001");
    }

    #[test]
    fn format_width_flags_and_numeric_verbs() {
        check_str(
            r#"format("%5d|%-5d|%05d", 42, 42, -42)"#,
            "   42|42   |-0042",
        );
        check_str(r#"format("%8.3f|%+d|% d", -2.5, 5, 5)"#, "  -2.500|+5| 5");
        check_str(
            r#"format("%-6s|%6s|%.2s", "ab", "ab", "hello")"#,
            "ab    |    ab|he",
        );
        check_str(
            r#"format("%x %X %o %b %#x %#o", 255, 255, 8, 5, 255, 8)"#,
            "ff FF 10 101 0xff 010",
        );
        check_str(r#"format("%.3d", 7)"#, "007");
        check_str(
            r#"format("%e|%E", 1234.5678, 0.000123)"#,
            "1.234568e+03|1.230000E-04",
        );
        check_str(r#"format("%.2e", 0)"#, "0.00e+00");
        check_str(r#"format("%g|%g|%g", 0.00001, 100, 1.5)"#, "1e-05|100|1.5");
        check_str(
            r#"format("%.3g|%.3g|%.2g", 3.14159, 1234567, 100)"#,
            "3.14|1.23e+06|1e+02",
        );
    }

    #[test]
    fn format_errors() {
        assert_eq!(err(r#"format("%y", 1)"#), "invalid format verb `%y`");
        assert_eq!(err(r#"format("%-5Q", 1)"#), "invalid format verb `%-5Q`");
        assert_eq!(
            err(r#"format("%s %s", "a")"#),
            "not enough arguments for `%s` at offset 3: need argument 2 but got 1"
        );
        assert_eq!(
            err(r#"format("%s", "a", "b")"#),
            "too many arguments: only 1 used by format string, got 2"
        );
        assert_eq!(
            err(r#"format("plain", 1)"#),
            "too many arguments: only 0 used by format string, got 1"
        );
        assert_eq!(
            err(r#"format("%d", 1.5)"#),
            "unsupported value for `%d` at offset 0: an integer is required"
        );
        assert_eq!(
            err(r#"format("%d", "x")"#),
            "unsupported value for `%d` at offset 0: a number is required"
        );
        assert_eq!(
            err(r#"format("%s", null)"#),
            "unsupported value for `%s` at offset 0: null value cannot be formatted"
        );
        assert_eq!(
            err(r#"format("%s", [1])"#),
            "unsupported value for `%s` at offset 0: a string is required"
        );
        assert_eq!(
            err(r#"format("%t", 1)"#),
            "unsupported value for `%t` at offset 0: a bool is required"
        );
        assert_eq!(
            err(r#"format("abc %5")"#),
            "unterminated format verb at offset 4"
        );
        assert_eq!(
            err(r#"format("%!", 1)"#),
            "unrecognized format character `!` at offset 1"
        );
        assert_eq!(
            err(r#"format("%*d", 1, 2)"#),
            "`*` width and precision are not supported, at offset 0"
        );
    }

    #[test]
    fn formatlist_iterates_lists() {
        check(
            r#"formatlist("Hello, %s!", ["Valentina", "Ander"])"#,
            r#"["Hello, Valentina!", "Hello, Ander!"]"#,
        );
        check(r#"formatlist("%s=%d", ["a", "b"], 1)"#, r#"["a=1", "b=1"]"#);
        check(r#"formatlist("%s", [])"#, "[]");
        check(r#"formatlist("plain")"#, r#"["plain"]"#);
        assert_eq!(
            err(r#"formatlist("%s-%s", ["a"], ["b", "c"])"#),
            "argument 2 has length 2, which is inconsistent with argument 1 of length 1"
        );
        assert_eq!(
            err(r#"formatlist("%d", [1, "x"])"#),
            "error on format iteration 1: unsupported value for `%d` at offset 0: a number is required"
        );
    }

    #[test]
    fn length_concat_contains_distinct() {
        check(r#"length("héllo")"#, "5");
        check("length([1, 2])", "2");
        check("length({a = 1})", "1");
        assert!(err("length(5)").starts_with("expected argument at position 0 to be of type"));
        check(r#"concat([1], [2, "3"], [])"#, r#"[1, 2, "3"]"#);
        assert_eq!(err("concat()"), "at least one argument is required");
        check(r#"contains(["a", "b"], "b")"#, "true");
        check(r#"contains([1], "1")"#, "false");
        check(
            r#"distinct(["a", "b", "a", "c", "b"])"#,
            r#"["a", "b", "c"]"#,
        );
    }

    #[test]
    fn element_flatten_reverse_slice() {
        check(r#"element(["a", "b", "c"], 1)"#, r#""b""#);
        check(r#"element(["a", "b", "c"], 3)"#, r#""a""#);
        check(r#"element(["a", "b", "c"], -1)"#, r#""c""#);
        assert_eq!(
            err("element([], 0)"),
            "cannot use element function with an empty list"
        );
        check(
            r#"flatten([["a", "b"], [], ["c", ["d"]], "e"])"#,
            r#"["a", "b", "c", "d", "e"]"#,
        );
        check("reverse([1, 2, 3])", "[3, 2, 1]");
        check(r#"slice(["a", "b", "c", "d"], 1, 3)"#, r#"["b", "c"]"#);
        check(r#"slice(["a"], 1, 1)"#, "[]");
        assert_eq!(
            err(r#"slice(["a"], 0, 2)"#),
            "end index `2` is greater than the length of the list (1)"
        );
        assert_eq!(
            err(r#"slice(["a", "b"], 2, 1)"#),
            "start index `2` is greater than end index `1`"
        );
        assert_eq!(
            err(r#"slice(["a"], -1, 1)"#),
            "start index must not be negative, got `-1`"
        );
    }

    #[test]
    fn maps() {
        check("keys({b = 1, a = 2, c = 3})", r#"["a", "b", "c"]"#);
        check("values({b = 1, a = 2, c = 3})", "[2, 1, 3]");
        check(r#"lookup({a = "x"}, "a")"#, r#""x""#);
        check(r#"lookup({a = "x"}, "b", "dflt")"#, r#""dflt""#);
        assert_eq!(
            err(r#"lookup({a = "x"}, "b")"#),
            "lookup failed to find key `b`"
        );
        assert_eq!(
            err(r#"lookup({a = "x"}, "a", 1, 2)"#),
            "expected 2 or 3 arguments, got 4"
        );
        let merged = eval("merge({a = 1, b = 2}, {b = 3, c = 4}, null)");
        assert_eq!(merged, lit("{a = 1, b = 3, c = 4}"));
        let order: Vec<&String> = merged.as_object().unwrap().keys().collect();
        assert_eq!(order, ["a", "b", "c"]);
        check("merge()", "{}");
        check(r#"zipmap(["a", "b"], [1, 2])"#, "{a = 1, b = 2}");
        assert_eq!(
            err(r#"zipmap(["a"], [])"#),
            "number of keys (1) does not match number of values (0)"
        );
        check("tomap({a = 1})", "{a = 1}");
        check("tomap(null)", "null");
        assert!(err(r#"tomap("a")"#).starts_with("expected argument at position 0"));
    }

    #[test]
    fn ranges() {
        check("range(3)", "[0, 1, 2]");
        check("range(0)", "[]");
        check("range(1, 4)", "[1, 2, 3]");
        check("range(0, 10, 3)", "[0, 3, 6, 9]");
        check("range(5, 1)", "[5, 4, 3, 2]");
        check("range(10, 5, -2)", "[10, 8, 6]");
        check("range(1, 0, 1)", "[]");
        check("range(0, 1, 0.25)", "[0, 0.25, 0.5, 0.75]");
        assert_eq!(err("range(0, 1, 0)"), "step must not be zero");
        assert_eq!(err("range()"), "expected 1 to 3 arguments, got 0");
        assert_eq!(err("range(1, 2, 3, 4)"), "expected 1 to 3 arguments, got 4");
        assert_eq!(eval("range(1024)").as_array().unwrap().len(), 1024);
        assert_eq!(
            err("range(1025)"),
            "more than 1024 values were generated; use a smaller range or a larger step"
        );
    }

    #[test]
    fn sorting_and_sets() {
        check(r#"sort(["e", "d", "a", "x"])"#, r#"["a", "d", "e", "x"]"#);
        check("sort([3, 10, 1])", r#"["1", "10", "3"]"#);
        assert_eq!(err(r#"sort(["a", null])"#), "element 1 is null");
        check(r#"toset(["c", "a", "b", "a"])"#, r#"["a", "b", "c"]"#);
        check("toset([3, 1, 3, 2.5])", "[1, 2.5, 3]");
        check(r#"toset(["a", 1, "1"])"#, r#"["1", "a"]"#);
        check("toset([true, false, true])", "[false, true]");
        check("toset([[1], [1], [0]])", "[[1], [0]]");
        assert_eq!(
            err(r#"toset(["a", null])"#),
            "set elements must not be null"
        );
        check("tolist([1])", "[1]");
        check("tolist(null)", "null");
    }

    #[test]
    fn coalescing_and_filtering() {
        check(r#"coalesce(null, "", "b", "c")"#, r#""b""#);
        check("coalesce(1, 2)", "1");
        assert_eq!(
            err(r#"coalesce(null, "")"#),
            "no non-null, non-empty-string arguments"
        );
        check(r#"coalescelist([], ["a"], ["b"])"#, r#"["a"]"#);
        assert_eq!(err("coalescelist([], [])"), "no non-empty list arguments");
        check(r#"compact(["a", "", null, "b", 1])"#, r#"["a", "b", "1"]"#);
        check(r#"index(["a", "b", "c"], "b")"#, "1");
        assert_eq!(err(r#"index(["a"], "z")"#), r#"item `"z"` not found"#);
        check("one([])", "null");
        check(r#"one(["x"])"#, r#""x""#);
        assert_eq!(
            err("one([1, 2])"),
            "must be a list with either zero or one elements, got 2"
        );
        check(r#"alltrue([true, "true"])"#, "true");
        check("alltrue([true, false])", "false");
        check("alltrue([])", "true");
        check("anytrue([false, true])", "true");
        check("anytrue([])", "false");
        assert_eq!(err("alltrue([1])"), "element 0 is not a bool: `1`");
        check(r#"chunklist(["a", "b", "c"], 2)"#, r#"[["a", "b"], ["c"]]"#);
        check("chunklist([1, 2], 0)", "[[1, 2]]");
        check("chunklist([], 3)", "[]");
        assert_eq!(
            err("chunklist([1], -1)"),
            "size must not be negative, got `-1`"
        );
    }

    #[test]
    fn aggregates() {
        check("sum([1, 2, 3])", "6");
        check(r#"sum([1, 2.5, "3"])"#, "6.5");
        assert_eq!(err("sum([])"), "cannot sum an empty list");
        assert_eq!(
            err(r#"sum([1, "x"])"#),
            r#"element 1 is not a number: `"x"`"#
        );
        check("min(3, 1.5, 2)", "1.5");
        check("max(3, 1.5, 2)", "3");
        check("max(-1)", "-1");
        assert_eq!(err("min()"), "must pass at least one number");
        assert!(err(r#"max(1, "2")"#).starts_with("expected variadic argument at position 1"));
    }

    #[test]
    fn conversions() {
        check_str("tostring(1.5)", "1.5");
        check_str("tostring(42)", "42");
        check_str("tostring(1e21)", "1000000000000000000000");
        check_str("tostring(true)", "true");
        check_str(r#"tostring("x")"#, "x");
        check("tostring(null)", "null");
        assert_eq!(err("tostring([1])"), "cannot convert list to string");
        check(r#"tonumber("42")"#, "42");
        check(r#"tonumber("-1.5e2")"#, "-150");
        check("tonumber(7)", "7");
        check("tonumber(null)", "null");
        assert_eq!(
            err(r#"tonumber("abc")"#),
            r#"cannot convert `"abc"` to number"#
        );
        assert_eq!(
            err(r#"tonumber("inf")"#),
            r#"cannot convert `"inf"` to number"#
        );
        check(r#"tobool("true")"#, "true");
        check("tobool(false)", "false");
        check("tobool(null)", "null");
        assert_eq!(err(r#"tobool("yes")"#), r#"cannot convert `"yes"` to bool"#);
        assert_eq!(err("tobool(1)"), "cannot convert `1` to bool");
    }

    #[test]
    fn numbers() {
        check("abs(-12.4)", "12.4");
        check("abs(-3)", "3");
        check("abs(0)", "0");
        check("ceil(4.1)", "5");
        check("ceil(-4.9)", "-4");
        check("ceil(5)", "5");
        check("floor(4.9)", "4");
        check("floor(-4.1)", "-5");
        check(r#"parseint("FF", 16)"#, "255");
        check(r#"parseint("ff", 16)"#, "255");
        check(r#"parseint("-1010", 2)"#, "-10");
        check(r#"parseint("zz", 36)"#, "1295");
        check(r#"parseint("aA", 62)"#, "656");
        assert_eq!(
            err(r#"parseint("12", 2)"#),
            "cannot parse `12` as a base 2 integer"
        );
        assert_eq!(
            err(r#"parseint("", 10)"#),
            "cannot parse `` as a base 10 integer"
        );
        assert_eq!(
            err(r#"parseint("1", 63)"#),
            "base must be a whole number between 2 and 62 inclusive, got `63`"
        );
        check("pow(3, 2)", "9");
        check("pow(4, 0.5)", "2");
        check("pow(2, -1)", "0.5");
        check("signum(-13)", "-1");
        check("signum(0)", "0");
        check("signum(3.5)", "1");
    }

    #[test]
    fn json() {
        check_str(
            r#"jsonencode({b = [1, "x<y"], a = null, c = true, d = 1.5})"#,
            r#"{"a":null,"b":[1,"x\u003cy"],"c":true,"d":1.5}"#,
        );
        check_str(r#"jsonencode("line\n\"q\"")"#, r#""line\n\"q\"""#);
        check(
            r#"jsondecode("{\"a\": [1, 2.5, \"x\"], \"b\": null, \"c\": {\"d\": true}}")"#,
            r#"{a = [1, 2.5, "x"], b = null, c = {d = true}}"#,
        );
        check(r#"jsondecode("\"hi\"")"#, r#""hi""#);
        assert_eq!(
            err(r#"jsondecode("{")"#),
            "invalid JSON: EOF while parsing an object at line 1 column 1"
        );
    }

    #[test]
    fn yaml() {
        check(
            r#"yamldecode("kind: ConfigMap\nmetadata:\n  name: x\ndata:\n  n: '1'\n  list: [1, 2.5, true, null]\n")"#,
            r#"{kind = "ConfigMap", metadata = {name = "x"}, data = {n = "1", list = [1, 2.5, true, null]}}"#,
        );
        assert!(err(r#"yamldecode("a: [")"#).starts_with("invalid YAML: "));
    }

    #[test]
    fn file_reads_text_and_names_the_path_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("cm.yaml");
        std::fs::write(&yaml, "kind: ConfigMap\n").unwrap();
        let p = yaml.display().to_string();
        check(
            &format!(r#"yamldecode(file("{p}"))"#),
            r#"{kind = "ConfigMap"}"#,
        );
        let missing = dir.path().join("none.yaml").display().to_string();
        assert_eq!(
            err(&format!(r#"file("{missing}")"#)),
            format!("no file exists at `{missing}`")
        );
        let bin = dir.path().join("bin");
        std::fs::write(&bin, [0xff, 0xfe]).unwrap();
        let b = bin.display().to_string();
        assert!(err(&format!(r#"file("{b}")"#)).contains("are not valid UTF-8"));
        let d = dir.path().display().to_string();
        assert!(err(&format!(r#"file("{d}")"#)).contains("is a directory"));
    }

    #[test]
    fn base64_and_urls() {
        check_str(r#"base64encode("Hello World")"#, "SGVsbG8gV29ybGQ=");
        check_str(r#"base64decode("SGVsbG8gV29ybGQ=")"#, "Hello World");
        assert!(err(r#"base64decode("!!")"#).starts_with("failed to decode base64 data `!!`: "));
        assert_eq!(
            err(r#"base64decode("/w==")"#),
            "the result of decoding the provided string is not valid UTF-8"
        );
        check_str(r#"urlencode("Hello World!")"#, "Hello+World%21");
        check_str(r#"urlencode("a/b?c=ä&d~e")"#, "a%2Fb%3Fc%3D%C3%A4%26d~e");
    }

    #[test]
    fn hashes() {
        check_str(
            r#"sha256("hello world")"#,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        );
        check_str(
            r#"sha256("")"#,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        );
        check_str(
            r#"sha512("hello world")"#,
            "309ecc489c12d6eb4cc40f50c902f2b4d0ed77ee511a7c7a9bcd3ca86d4cd86f\
             989dd35bc5ff499670da34255b45b0cfd830e81f605dcf7dc5542e93ae9cd76f",
        );
        check_str(
            r#"base64sha256("hello world")"#,
            "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
        );
        check_str(
            r#"base64sha512("hello world")"#,
            "MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw==",
        );
    }

    #[test]
    fn timestamp_is_rfc3339_utc_seconds() {
        let now = eval("timestamp()");
        let s = now.as_str().expect("timestamp() returns a string");
        assert_eq!(s.len(), 20, "{s}");
        assert!(s.ends_with('Z'), "{s}");
        let parsed = DateTime::parse_from_rfc3339(s).expect("valid RFC 3339");
        let drift = (Utc::now() - parsed.with_timezone(&Utc)).num_seconds();
        assert!((0..=5).contains(&drift), "{s} is {drift}s from now");
        assert!(err("timestamp(1)").starts_with("expected 0 positional arguments"));
    }

    #[test]
    fn formatdate_terraform_examples() {
        let ts = "2018-01-02T23:12:01Z";
        let fd = |spec: &str, ts: &str| eval(&format!(r#"formatdate("{spec}", "{ts}")"#));
        assert_eq!(
            fd("DD MMM YYYY hh:mm ZZZ", ts),
            Value::from("02 Jan 2018 23:12 UTC")
        );
        assert_eq!(
            fd("EEEE, DD-MMM-YY hh:mm:ss ZZZ", ts),
            Value::from("Tuesday, 02-Jan-18 23:12:01 UTC")
        );
        assert_eq!(
            fd("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2018-01-02T23:12:01-08:00"),
            Value::from("Tue, 02 Jan 2018 23:12:01 -0800")
        );
        assert_eq!(fd("MMM DD, YYYY", ts), Value::from("Jan 02, 2018"));
        assert_eq!(fd("HH:mmaa", ts), Value::from("11:12pm"));
        assert_eq!(
            fd(
                "H:m:s AA M/D MMMM Z ZZZZ ZZZZZ",
                "2018-03-04T00:05:09+05:30"
            ),
            Value::from("12:5:9 AM 3/4 March +05:30 +0530 +05:30")
        );
        assert_eq!(fd("Z|ZZZZ|ZZZZZ", ts), Value::from("Z|+0000|+00:00"));
        assert_eq!(
            fd("'Date:' YYYY 'o''clock' ''", ts),
            Value::from("Date: 2018 o'clock '")
        );
    }

    #[test]
    fn formatdate_errors() {
        let ts = "2018-01-02T23:12:01Z";
        assert_eq!(
            err(&format!(r#"formatdate("YYY", "{ts}")"#)),
            "invalid date format verb `YYY`: year must either be `YY` or `YYYY`"
        );
        assert_eq!(
            err(&format!(r#"formatdate("DDD", "{ts}")"#)),
            "invalid date format verb `DDD`: day of month must either be `D` or `DD`"
        );
        assert_eq!(
            err(&format!(r#"formatdate("q", "{ts}")"#)),
            "invalid date format verb `q`: quote literal letters with `'`"
        );
        assert_eq!(
            err(&format!(r#"formatdate("'abc", "{ts}")"#)),
            "unterminated literal `'`"
        );
        assert!(err(r#"formatdate("YYYY", "2018-01-02")"#)
            .starts_with("not a valid RFC3339 timestamp `2018-01-02`: "));
    }

    #[test]
    fn timeadd_go_durations() {
        let ta = |ts: &str, d: &str| eval(&format!(r#"timeadd("{ts}", "{d}")"#));
        let base = "2017-11-22T00:00:00Z";
        assert_eq!(ta(base, "10m"), Value::from("2017-11-22T00:10:00Z"));
        assert_eq!(ta(base, "1h30m"), Value::from("2017-11-22T01:30:00Z"));
        assert_eq!(ta(base, "1.5h"), Value::from("2017-11-22T01:30:00Z"));
        assert_eq!(ta(base, "-10m"), Value::from("2017-11-21T23:50:00Z"));
        assert_eq!(ta(base, "45s"), Value::from("2017-11-22T00:00:45Z"));
        assert_eq!(ta(base, "0"), Value::from(base));
        assert_eq!(ta(base, "1500ms"), Value::from("2017-11-22T00:00:01Z"));
        assert_eq!(ta(base, "24h"), Value::from("2017-11-23T00:00:00Z"));
        assert_eq!(
            ta("2017-11-22T00:00:00+02:00", "45s"),
            Value::from("2017-11-22T00:00:45+02:00")
        );
        assert_eq!(
            ta("2017-11-22T00:00:00.5Z", "1s"),
            Value::from("2017-11-22T00:00:01Z")
        );
        let te = |d: &str| err(&format!(r#"timeadd("{base}", "{d}")"#));
        assert_eq!(te("1d"), "unknown unit `d` in duration `1d`");
        assert_eq!(te("10"), "missing unit in duration `10`");
        assert_eq!(te(""), "invalid duration ``");
        assert_eq!(te("h"), "invalid duration `h`");
        assert_eq!(te("1h-5m"), "unknown unit `h-` in duration `1h-5m`");
        assert!(err(r#"timeadd("yesterday", "1h")"#)
            .starts_with("not a valid RFC3339 timestamp `yesterday`: "));
    }

    #[test]
    fn declares_every_function() {
        let names = [
            "upper",
            "lower",
            "title",
            "trimspace",
            "trim",
            "trimprefix",
            "trimsuffix",
            "replace",
            "split",
            "join",
            "format",
            "formatlist",
            "substr",
            "strrev",
            "startswith",
            "endswith",
            "strcontains",
            "chomp",
            "indent",
            "length",
            "concat",
            "contains",
            "distinct",
            "element",
            "flatten",
            "keys",
            "values",
            "lookup",
            "merge",
            "range",
            "reverse",
            "slice",
            "sort",
            "toset",
            "tolist",
            "tomap",
            "coalesce",
            "coalescelist",
            "compact",
            "zipmap",
            "index",
            "one",
            "sum",
            "min",
            "max",
            "alltrue",
            "anytrue",
            "chunklist",
            "tostring",
            "tonumber",
            "tobool",
            "abs",
            "ceil",
            "floor",
            "parseint",
            "pow",
            "signum",
            "jsonencode",
            "jsondecode",
            "base64encode",
            "base64decode",
            "urlencode",
            "sha256",
            "sha512",
            "base64sha256",
            "base64sha512",
            "timestamp",
            "formatdate",
            "timeadd",
        ];
        let ctx = context();
        for name in names {
            // Calling with a wrong argument list must reach the function, not fail lookup.
            let src = format!("{name}(1, 2, 3, 4, 5)");
            if let Err(e) = parse(&src).evaluate(&ctx) {
                assert!(
                    !matches!(e.kind(), ErrorKind::UndefinedFunc(_)),
                    "`{name}` is not declared"
                );
            }
        }
    }
}
