//! etcdctl's txn input: compares, a blank line, success ops, a blank line, failure ops, a
//! blank line; each op written like the get/put/del command line.

use crate::error::{CtlError, Result, EXIT_INVALID_INPUT};
use oxcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use oxcd_api::etcdserverpb::{Compare, RequestOp, TxnRequest};
use std::io::BufRead;

/// Bad txn input: ExitInvalidInput, as etcdctl.
fn invalid(msg: impl Into<String>) -> CtlError {
    CtlError::new(EXIT_INVALID_INPUT, msg)
}

fn read_line(r: &mut dyn BufRead) -> Result<String> {
    let mut line = String::new();
    match r.read_line(&mut line) {
        Ok(_) if line.ends_with('\n') => Ok(line),
        Ok(_) => Err(invalid("EOF")),
        Err(e) => Err(invalid(e.to_string())),
    }
}

pub fn read_txn(
    r: &mut dyn BufRead,
    interactive: bool,
    parse_op: &dyn Fn(&[String]) -> Result<RequestOp>,
) -> Result<TxnRequest> {
    let prompt = |s: &str| {
        if interactive {
            println!("{s}");
        }
    };
    let mut txn = TxnRequest::default();
    prompt("compares:");
    loop {
        let line = read_line(r)?;
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        txn.compare.push(parse_compare(line)?);
    }
    for (i, title) in [
        "success requests (get, put, del):",
        "failure requests (get, put, del):",
    ]
    .iter()
    .enumerate()
    {
        prompt(title);
        loop {
            let line = read_line(r)?;
            let line = line.trim();
            if line.is_empty() {
                break;
            }
            let args = argify(line);
            if args.len() < 2 {
                return Err(invalid(format!("invalid txn compare request: {line}")));
            }
            let op =
                parse_op(&args).map_err(|_| invalid(format!("invalid txn request: {line}")))?;
            if i == 0 {
                txn.success.push(op);
            } else {
                txn.failure.push(op);
            }
        }
    }
    Ok(txn)
}

/// Splits a line like a shell would for etcdctl: words, "double" (Go-quoted) and 'single'.
pub fn argify(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' {
            let mut j = i + 1;
            let mut buf = String::new();
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' && j + 1 < chars.len() {
                    j += 1;
                    buf.push(match chars[j] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    buf.push(chars[j]);
                }
                j += 1;
            }
            out.push(buf);
            i = j + 1;
        } else if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.push(chars[i + 1..j.min(chars.len())].iter().collect());
            i = j + 1;
        } else {
            let mut j = i;
            while j < chars.len() && !chars[j].is_whitespace() {
                j += 1;
            }
            out.push(chars[i..j].iter().collect());
            i = j;
        }
    }
    out
}

/// `target("key") op "value"`, e.g. `mod("k") > "3"` or `value("k") = "v"`.
pub fn parse_compare(line: &str) -> Result<Compare> {
    let malformed = || invalid(format!("malformed comparison: {line}"));
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let rest = rest.trim_start();
    let (key, rest) = take_quoted(rest).ok_or_else(malformed)?;
    let rest = rest
        .trim_start()
        .strip_prefix(')')
        .ok_or_else(malformed)?
        .trim_start();
    let (op, rest) = rest.split_once(char::is_whitespace).ok_or_else(malformed)?;
    let (val, _) = take_quoted(rest.trim_start()).ok_or_else(malformed)?;
    let result = match op {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        _ => return Err(malformed()),
    };
    let bad_value = || invalid(format!("invalid txn compare request: {line}"));
    let int = |radix| i64::from_str_radix(&val, radix).map_err(|_| bad_value());
    let (t, union) = match target.trim() {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(int(10)?)),
        "c" | "create" => (CompareTarget::Create, TargetUnion::CreateRevision(int(10)?)),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int(10)?)),
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(val.clone().into_bytes()),
        ),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(int(16)?)),
        other => {
            return Err(invalid(format!(
                "malformed comparison: {line} (unknown target {other})"
            )))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: t as i32,
        key: key.into_bytes(),
        target_union: Some(union),
        range_end: vec![],
    })
}

/// A Go-quoted string at the start of `s`, and what follows it.
fn take_quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    other => other,
                });
            }
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_parse_like_etcdctl() {
        let c = parse_compare(r#"mod("key1") > "0""#).expect("parse");
        assert_eq!(c.key, b"key1");
        assert_eq!(c.result(), CompareResult::Greater);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));
        let c = parse_compare(r#"value("k") = "a b""#).expect("parse");
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"a b".to_vec())));
        assert!(parse_compare("bogus").is_err());
        assert!(parse_compare(r#"ver("k") = "x""#).is_err());
    }

    #[test]
    fn argify_splits_quotes() {
        assert_eq!(argify(r#"put k "a b""#), vec!["put", "k", "a b"]);
        assert_eq!(argify("get 'x y' --prefix"), vec!["get", "x y", "--prefix"]);
    }
}
