//! `fields=` expressions, parsed strictly: `id,caption,children{id,media_url}` and the
//! `.limit(n)` modifier on edges (`media.limit(5){id}`).
//!
//! Grammar: `list := item ("," item)*`, `item := name ("." "limit" "(" digits ")")? ("{" list "}")?`,
//! `name := [a-z][a-z0-9_]*`. Spaces around names are allowed. Anything else is a code-100
//! error naming the character where parsing stopped, never a panic or a 500.

use crate::error::GraphError;

/// How deep `{…}` may nest.
pub const MAX_DEPTH: usize = 3;
/// The longest `fields` value accepted.
pub const MAX_LEN: usize = 2048;

/// One requested field, with its sub-selection if it is an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// `.limit(n)`, for edges.
    pub limit: Option<u32>,
    /// `{…}`, for edges.
    pub sub: Option<Vec<Field>>,
}

impl Field {
    pub fn plain(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            limit: None,
            sub: None,
        }
    }
}

/// Writes a selection back in the syntax [`parse`] reads, for `next` links of nested edges.
pub fn render(fields: &[Field]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&f.name);
        if let Some(n) = f.limit {
            out.push_str(&format!(".limit({n})"));
        }
        if let Some(sub) = &f.sub {
            out.push('{');
            out.push_str(&render(sub));
            out.push('}');
        }
    }
    out
}

/// Plain field names, for defaults.
pub fn plain(names: &[&str]) -> Vec<Field> {
    names.iter().map(|n| Field::plain(n)).collect()
}

/// Parses a `fields` value. Later duplicates of a name are dropped.
pub fn parse(raw: &str) -> Result<Vec<Field>, GraphError> {
    if raw.len() > MAX_LEN {
        return Err(GraphError::invalid_parameter(format!(
            "fields is longer than {MAX_LEN} characters"
        )));
    }
    let mut p = Parser {
        s: raw.as_bytes(),
        raw,
        at: 0,
    };
    let list = p.list(0)?;
    p.skip_spaces();
    if p.at != p.s.len() {
        return Err(p.error("Expected \",\" or end of string"));
    }
    Ok(list)
}

struct Parser<'a> {
    s: &'a [u8],
    raw: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> GraphError {
        GraphError::invalid_parameter(format!(
            "Syntax error \"{what}\" at character {} in fields: {}",
            self.at, self.raw
        ))
    }
    fn skip_spaces(&mut self) {
        while self.s.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        self.skip_spaces();
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn name(&mut self) -> Result<String, GraphError> {
        self.skip_spaces();
        let start = self.at;
        match self.s.get(self.at) {
            Some(b) if b.is_ascii_lowercase() => self.at += 1,
            _ => return Err(self.error("Expected a field name")),
        }
        while let Some(b) = self.s.get(self.at) {
            if b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' {
                self.at += 1;
            } else {
                break;
            }
        }
        Ok(self.raw[start..self.at].to_owned())
    }
    fn list(&mut self, depth: usize) -> Result<Vec<Field>, GraphError> {
        let mut out: Vec<Field> = Vec::new();
        loop {
            let item = self.item(depth)?;
            if !out.iter().any(|f| f.name == item.name) {
                out.push(item);
            }
            if !self.eat(b',') {
                return Ok(out);
            }
        }
    }
    fn item(&mut self, depth: usize) -> Result<Field, GraphError> {
        let name = self.name()?;
        let mut limit = None;
        if self.eat(b'.') {
            if self.name()? != "limit" || !self.eat(b'(') {
                return Err(self.error("Expected .limit(n)"));
            }
            self.skip_spaces();
            let start = self.at;
            while self.s.get(self.at).is_some_and(u8::is_ascii_digit) {
                self.at += 1;
            }
            let n: u32 = self.raw[start..self.at]
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| self.error("Expected a positive number"))?;
            if !self.eat(b')') {
                return Err(self.error("Expected \")\""));
            }
            limit = Some(n);
        }
        let mut sub = None;
        if self.eat(b'{') {
            if depth + 1 >= MAX_DEPTH {
                return Err(self.error("Fields nest too deeply"));
            }
            sub = Some(self.list(depth + 1)?);
            if !self.eat(b'}') {
                return Err(self.error("Expected \"}\""));
            }
        }
        Ok(Field { name, limit, sub })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_nested() {
        let f = parse("id, username,media.limit(5){id,caption},id").unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0], Field::plain("id"));
        assert_eq!(f[1], Field::plain("username"));
        assert_eq!(f[2].name, "media");
        assert_eq!(f[2].limit, Some(5));
        assert_eq!(f[2].sub.as_deref(), Some(&plain(&["id", "caption"])[..]));
        assert_eq!(render(&f), "id,username,media.limit(5){id,caption}");
        assert_eq!(parse(&render(&f)).unwrap(), f);
    }

    #[test]
    fn malformed_is_code_100() {
        for bad in [
            "",
            ",",
            "id,",
            "id,,x",
            "Id",
            "id{",
            "id}",
            "media{}",
            "media{id}}",
            "media.limit(0){id}",
            "media.limit(x)",
            "media.after(1)",
            "a{b{c{d}}}",
            "id;drop",
            "1d",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, 100, "{bad}");
        }
        assert_eq!(parse(&"a,".repeat(1500)).unwrap_err().code, 100);
    }
}
