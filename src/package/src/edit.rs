//! Edits of `manifest.yml` by source span: each change replaces or inserts the bytes of
//! one node, so comments, blank lines, quoting and the order of everything else stay
//! as they were. Callers re-parse the result as the typed manifest before using it.

use buildpack::yaml::{Kind, Node, Style};
use std::fmt::Write as _;

/// A value to write: a scalar, a list of scalars (written `[a, b]`), or a mapping of
/// those (written as a block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Scalar(String),
    /// A whole number, written plain.
    Int(u64),
    List(Vec<String>),
    Map(Vec<(String, Value)>),
    /// A block sequence of mappings, such as `default_versions`.
    Items(Vec<Vec<(String, Value)>>),
}

/// Why a node cannot be edited in place: the caller names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refused(pub String);

/// Pending replacements of `text`, applied all at once by `finish`.
pub(crate) struct Editor<'t> {
    text: &'t str,
    /// The file's line break (`\r\n` in a file written on Windows), for the lines added.
    newline: &'static str,
    /// (start, end, replacement), in the order they were made.
    edits: Vec<(usize, usize, String)>,
}

impl<'t> Editor<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        let first_break = text.find('\n');
        let crlf = first_break.is_some_and(|i| text[..i].ends_with('\r'));
        Editor {
            text,
            newline: if crlf { "\r\n" } else { "\n" },
            edits: Vec::new(),
        }
    }

    /// Sets a scalar's value, in its own quoting style when that can hold it.
    pub(crate) fn set_scalar(&mut self, node: &Node, value: &str) -> Result<(), Refused> {
        let style = match &node.kind {
            Kind::Scalar { value: old, .. } if old == value => return Ok(()),
            Kind::Scalar { style, .. } if *style != Style::Block && !node.anchored() => *style,
            _ => return Err(not_plain(node)),
        };
        self.push(node.start, node.end, scalar(value, style));
        Ok(())
    }

    /// Sets a plain scalar to a whole number.
    pub(crate) fn set_int(&mut self, node: &Node, value: u64) -> Result<(), Refused> {
        match &node.kind {
            Kind::Scalar { value: old, .. } if *old == value.to_string() => Ok(()),
            Kind::Scalar {
                style: Style::Plain,
                ..
            } if !node.anchored() => {
                self.push(node.start, node.end, value.to_string());
                Ok(())
            }
            _ => Err(not_plain(node)),
        }
    }

    /// Makes a list of scalars hold `values`. A block list is edited as a person would:
    /// the items that stay keep their lines and comments, an item that takes another's
    /// place takes its line, the rest are removed or added with their own lines. Any
    /// other list is written `[a, b]`.
    pub(crate) fn set_list(
        &mut self,
        key: &Node,
        node: &Node,
        values: &[String],
    ) -> Result<(), Refused> {
        match &node.kind {
            Kind::Sequence { items, .. }
                if items
                    .iter()
                    .map(Node::as_str)
                    .eq(values.iter().map(|v| Some(v.as_str()))) =>
            {
                return Ok(());
            }
            _ if node.anchored() => return Err(not_plain(node)),
            _ => {}
        }
        match &node.kind {
            Kind::Sequence { flow: false, items } if !values.is_empty() && !items.is_empty() => {
                self.set_block_list(node, items, values)
            }
            Kind::Sequence { flow: true, .. } => {
                self.push(node.start, node.end, flow_list(values));
                Ok(())
            }
            _ => self.replace_value(key, node, &Value::List(values.to_vec())),
        }
    }

    fn set_block_list(
        &mut self,
        node: &Node,
        items: &[Node],
        values: &[String],
    ) -> Result<(), Refused> {
        let old: Vec<Option<&str>> = items.iter().map(Node::as_str).collect();
        let kept = common_subsequence(&old, values);
        let indent = node.column - 1;
        let line = |value: &str| format!("{:indent$}- {}\n", "", scalar(value, Style::Plain));
        // Between two kept items (and before the first, after the last) old items give
        // their places to new values one by one; the rest go, or come after them.
        let mut bounds = kept.clone();
        bounds.push((items.len(), values.len()));
        let (mut i, mut j) = (0, 0);
        for (next_i, next_j) in bounds {
            let (gone, new) = (&items[i..next_i], &values[j..next_j]);
            for (item, value) in gone.iter().zip(new) {
                self.set_scalar(item, value)?;
            }
            for item in gone.iter().skip(new.len()) {
                self.remove_item_lines(item)?;
            }
            let added: String = new.iter().skip(gone.len()).map(|v| line(v)).collect();
            if !added.is_empty() {
                let at = match (gone.first(), i.checked_sub(1), items.get(next_i)) {
                    (Some(_), _, _) => self.line_end(gone[gone.len().min(new.len()) - 1].end),
                    (None, Some(before), _) => self.line_end(items[before].end),
                    (None, None, Some(after)) => self.item_line_start(after)?,
                    (None, None, None) => return Err(Refused("has no item".into())),
                };
                self.insert(at, added);
            }
            (i, j) = (next_i + 1, next_j + 1);
        }
        Ok(())
    }

    /// Adds `key: value` as the last entry of a block mapping.
    pub(crate) fn insert_entry(
        &mut self,
        map: &Node,
        key: &str,
        value: &Value,
    ) -> Result<(), Refused> {
        match &map.kind {
            _ if map.anchored() => Err(not_plain(map)),
            Kind::Mapping { flow: false, .. } => {
                let indent = map.column - 1;
                let at = self.line_end(map.end);
                self.insert(at, entry(indent, key, value));
                Ok(())
            }
            _ => Err(Refused(
                "is not a block mapping (one `key: value` per line), so nothing can be added to it"
                    .into(),
            )),
        }
    }

    /// Adds an item at the end of a block list.
    pub(crate) fn append_item(
        &mut self,
        key: &Node,
        seq: &Node,
        item: &Value,
    ) -> Result<(), Refused> {
        match &seq.kind {
            _ if seq.anchored() => Err(not_plain(seq)),
            Kind::Sequence { flow: false, .. } => {
                let indent = seq.column - 1;
                let at = self.line_end(seq.end);
                self.insert(at, list_item(indent, item));
                Ok(())
            }
            Kind::Sequence { flow: true, items } if items.is_empty() => {
                let new = match item {
                    Value::Map(entries) => Value::Items(vec![entries.clone()]),
                    Value::Scalar(s) => Value::List(vec![s.clone()]),
                    _ => return Err(Refused("cannot hold that item".into())),
                };
                self.replace_value(key, seq, &new)
            }
            _ => Err(Refused(
                "is not a block list ('- ' items, one per line), so nothing can be added to it"
                    .into(),
            )),
        }
    }

    /// Removes one item of a block list, with its lines.
    pub(crate) fn remove_item(&mut self, seq: &Node, index: usize) -> Result<(), Refused> {
        match &seq.kind {
            Kind::Sequence { flow: false, items } => match items.get(index) {
                Some(item) => self.remove_item_lines(item),
                None => Ok(()),
            },
            _ => Err(Refused(
                "is not a block list ('- ' items, one per line), so no item can be removed".into(),
            )),
        }
    }

    /// Removes `key: value` from a block mapping, with its lines.
    pub(crate) fn remove_entry(&mut self, key: &Node, value: &Node) -> Result<(), Refused> {
        let start = self.line_start(key.start);
        if self.text[start..key.start].trim() != "" {
            return Err(Refused(
                "shares its line with another key, so it cannot be removed".into(),
            ));
        }
        let end = self.line_end(value.end.max(key.end));
        self.push(start, end, String::new());
        Ok(())
    }

    /// Replaces whatever follows `key` (its `:` and value) with `: <value>`. A value of
    /// several lines goes below the key, whose line keeps its comment.
    pub(crate) fn replace_value(
        &mut self,
        key: &Node,
        value: &Node,
        new: &Value,
    ) -> Result<(), Refused> {
        let colon = self.text[key.end..]
            .find(':')
            .map(|i| key.end + i)
            .ok_or_else(|| Refused("has no ':' after its key".into()))?;
        // An empty value (`key:` alone) has no bytes of its own.
        let empty = matches!(&value.kind, Kind::Scalar { value, style: Style::Plain, .. } if value.is_empty());
        let end = if empty || value.end < colon {
            colon + 1
        } else {
            value.end
        };
        let indent = key.column - 1;
        let text = match new {
            Value::Scalar(s) => format!(": {}", scalar(s, Style::Plain)),
            Value::Int(n) => format!(": {n}"),
            Value::List(l) => format!(": {}", flow_list(l)),
            Value::Items(items) if items.is_empty() => ": []".to_string(),
            other => {
                self.push(colon, end, ":".into());
                let at = self.line_end(end);
                self.insert(at, block(indent, other));
                return Ok(());
            }
        };
        self.push(colon, end, text);
        Ok(())
    }

    /// The text with every edit applied; refused if two edits overlap (a bug).
    pub(crate) fn finish(self) -> Result<String, Refused> {
        let mut edits = self.edits;
        // Stable: insertions at one point keep the order they were made in, and come
        // before a removal that starts there.
        edits.sort_by_key(|e| (e.0, e.1));
        let mut out = String::with_capacity(self.text.len());
        let mut pos = 0;
        for (start, end, text) in edits {
            if start < pos {
                return Err(Refused("two edits overlap".into()));
            }
            out.push_str(&self.text[pos..start]);
            out.push_str(&text);
            pos = end;
        }
        out.push_str(&self.text[pos..]);
        Ok(out)
    }

    /// Records a replacement, its line breaks written as the file writes them.
    fn push(&mut self, start: usize, end: usize, text: String) {
        let text = if self.newline == "\n" {
            text
        } else {
            text.replace('\n', self.newline)
        };
        self.edits.push((start, end, text));
    }

    fn insert(&mut self, at: usize, text: String) {
        let text = if at == self.text.len() && !self.text.is_empty() && !self.text.ends_with('\n') {
            format!("\n{text}")
        } else {
            text
        };
        self.push(at, at, text);
    }

    fn remove_item_lines(&mut self, item: &Node) -> Result<(), Refused> {
        let start = self.item_line_start(item)?;
        let end = self.line_end(item.end);
        self.push(start, end, String::new());
        Ok(())
    }

    /// The start of the line that holds a block list item's `-`.
    fn item_line_start(&self, item: &Node) -> Result<usize, Refused> {
        let before = self.text[..item.start].trim_end_matches([' ', '\t']);
        let dash = before
            .strip_suffix('-')
            .map(str::len)
            .or_else(|| {
                self.text[item.start..]
                    .starts_with('-')
                    .then_some(item.start)
            })
            .ok_or_else(|| Refused("is not an item of a block list".into()))?;
        let start = self.line_start(dash);
        if self.text[start..dash].trim() != "" {
            return Err(Refused(
                "shares its line with another node, so it cannot be removed".into(),
            ));
        }
        Ok(start)
    }

    fn line_start(&self, pos: usize) -> usize {
        self.text[..pos].rfind('\n').map_or(0, |i| i + 1)
    }

    /// Just past the newline that ends the line holding `pos` (comments included);
    /// `pos` itself when it already starts a line.
    fn line_end(&self, pos: usize) -> usize {
        if pos > 0 && self.text[..pos].ends_with('\n') {
            return pos;
        }
        self.text[pos..]
            .find('\n')
            .map_or(self.text.len(), |i| pos + i + 1)
    }
}

/// The pairs `(i, j)` of a longest common subsequence of `old` and `new`, in order: the
/// items of a list that an edit keeps. Lists that are too long for the table are
/// matched by position instead (nothing real comes near).
fn common_subsequence(old: &[Option<&str>], new: &[String]) -> Vec<(usize, usize)> {
    let (n, m) = (old.len(), new.len());
    if n.saturating_mul(m) > 1 << 20 {
        return Vec::new();
    }
    // longest[i][j]: the length of a longest common subsequence of old[i..] and new[j..].
    let mut longest = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            longest[i][j] = if old[i] == Some(new[j].as_str()) {
                longest[i + 1][j + 1] + 1
            } else {
                longest[i + 1][j].max(longest[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < n && j < m {
        if old[i] == Some(new[j].as_str()) {
            pairs.push((i, j));
            (i, j) = (i + 1, j + 1);
        } else if longest[i + 1][j] >= longest[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

fn not_plain(node: &Node) -> Refused {
    let what = if node.anchored() {
        "carries an anchor (&name) that other keys may share"
    } else {
        match node.kind {
            Kind::Alias { .. } => "is an alias (*name) of another value",
            Kind::Scalar { .. } => "is a block scalar (| or >)",
            _ => "is not a single value",
        }
    };
    Refused(what.to_string())
}

/// `value` as a YAML scalar that reads back as exactly this string: in `style` where
/// that is safe, else double-quoted.
pub(crate) fn scalar(value: &str, style: Style) -> String {
    match style {
        Style::Plain if plain_is_safe(value) => value.to_string(),
        Style::SingleQuoted if !value.chars().any(char::is_control) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        _ => {
            let mut out = String::from("\"");
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => {
                        let _ = write!(out, "\\u{:04x}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

/// A plain scalar that YAML reads back as this very string: ordinary characters only,
/// and nothing that resolves to a number, a bool or null.
fn plain_is_safe(value: &str) -> bool {
    let first_ok = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '.');
    let chars_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._/:+~%=@-".contains(c));
    let special = matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "~" | ".inf" | ".nan"
    );
    let number = value.parse::<f64>().is_ok()
        || value.starts_with("0x")
        || value.starts_with("0o")
        || value.replace('_', "").parse::<f64>().is_ok();
    first_ok && chars_ok && !special && !number && !value.ends_with(':')
}

fn flow_list(values: &[String]) -> String {
    let items: Vec<String> = values.iter().map(|v| scalar(v, Style::Plain)).collect();
    format!("[{}]", items.join(", "))
}

/// `key: value` lines at `indent`.
fn entry(indent: usize, key: &str, value: &Value) -> String {
    match value {
        Value::Scalar(s) => format!("{:indent$}{key}: {}\n", "", scalar(s, Style::Plain)),
        Value::Int(n) => format!("{:indent$}{key}: {n}\n", ""),
        Value::List(l) => format!("{:indent$}{key}: {}\n", "", flow_list(l)),
        Value::Items(items) if items.is_empty() => format!("{:indent$}{key}: []\n", ""),
        other => format!("{:indent$}{key}:\n{}", "", block(indent, other)),
    }
}

/// A mapping's entries, or a list of mappings, as block lines at `indent`.
fn block(indent: usize, value: &Value) -> String {
    match value {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| entry(indent + 2, k, v))
            .collect(),
        Value::Items(items) => items
            .iter()
            .map(|m| list_item(indent, &Value::Map(m.clone())))
            .collect(),
        Value::Scalar(_) | Value::Int(_) | Value::List(_) => list_item(indent, value),
    }
}

/// `- item` lines with the dash at `indent`; a mapping's later keys line up after it.
fn list_item(indent: usize, item: &Value) -> String {
    match item {
        Value::Map(entries) => {
            let mut out = String::new();
            for (i, (k, v)) in entries.iter().enumerate() {
                let line = entry(indent + 2, k, v);
                if i == 0 {
                    let _ = write!(out, "{:indent$}- {}", "", &line[indent + 2..]);
                } else {
                    out.push_str(&line);
                }
            }
            out
        }
        Value::Scalar(s) => format!("{:indent$}- {}\n", "", scalar(s, Style::Plain)),
        Value::Int(n) => format!("{:indent$}- {n}\n", ""),
        Value::List(l) => format!("{:indent$}- {}\n", "", flow_list(l)),
        Value::Items(_) => format!("{:indent$}- {}\n", "", "[]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildpack::yaml::{parse, path_steps};

    fn node<'a>(root: &'a Node, path: &str) -> &'a Node {
        root.at(&path_steps(path))
            .unwrap_or_else(|| panic!("no {path}"))
    }

    fn key<'a>(root: &'a Node, path: &str) -> &'a Node {
        let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
        let parent = if parent.is_empty() {
            root
        } else {
            node(root, parent)
        };
        &parent.entries_named(name).first().expect("key").0
    }

    const TEXT: &str = "# head\na: 1 # one\nl:\n  - x  # ex\n  - y\nf: [p, q]\nm:\n- k: v # kv\n  s: 'it''s'\nlast: z";

    #[test]
    fn scalars_keep_their_comment_and_style() {
        let root = parse(TEXT).expect("yaml").expect("doc");
        let mut e = Editor::new(TEXT);
        e.set_scalar(node(&root, "a"), "2.0").expect("a");
        e.set_scalar(node(&root, "m[0].k"), "w").expect("k");
        e.set_scalar(node(&root, "m[0].s"), "that's").expect("s");
        let out = e.finish().expect("finish");
        assert_eq!(
            out,
            "# head\na: \"2.0\" # one\nl:\n  - x  # ex\n  - y\nf: [p, q]\nm:\n- k: w # kv\n  s: 'that''s'\nlast: z"
        );
    }

    #[test]
    fn lists_grow_and_shrink_in_place() {
        let root = parse(TEXT).expect("yaml").expect("doc");
        let mut e = Editor::new(TEXT);
        let three: Vec<String> = ["x", "y2", "w"].map(String::from).to_vec();
        e.set_list(key(&root, "l"), node(&root, "l"), &three)
            .expect("l");
        e.set_list(key(&root, "f"), node(&root, "f"), &["r".into()])
            .expect("f");
        e.set_list(key(&root, "a"), node(&root, "a"), &["s".into(), "t".into()])
            .expect("a");
        let out = e.finish().expect("finish");
        assert_eq!(
            out,
            "# head\na: [s, t] # one\nl:\n  - x  # ex\n  - y2\n  - w\nf: [r]\nm:\n- k: v # kv\n  s: 'it''s'\nlast: z"
        );
        let root = parse(&out).expect("yaml").expect("doc");
        let mut e = Editor::new(&out);
        e.set_list(key(&root, "l"), node(&root, "l"), &["x".into()])
            .expect("l");
        assert!(e
            .finish()
            .expect("finish")
            .contains("l:\n  - x  # ex\nf: [r]"));
    }

    #[test]
    fn entries_and_items_are_added_and_removed() {
        let root = parse(TEXT).expect("yaml").expect("doc");
        let mut e = Editor::new(TEXT);
        e.insert_entry(
            node(&root, "m[0]"),
            "file",
            &Value::Scalar("d/x.tgz".into()),
        )
        .expect("file");
        e.append_item(
            key(&root, "m"),
            node(&root, "m"),
            &Value::Map(vec![
                ("k".into(), Value::Scalar("nn".into())),
                ("st".into(), Value::List(vec!["a".into()])),
            ]),
        )
        .expect("item");
        e.insert_entry(&root, "stack", &Value::Scalar("cflinuxfs4".into()))
            .expect("stack");
        e.remove_entry(key(&root, "f"), node(&root, "f"))
            .expect("f");
        let out = e.finish().expect("finish");
        assert_eq!(
            out,
            "# head\na: 1 # one\nl:\n  - x  # ex\n  - y\nm:\n- k: v # kv\n  s: 'it''s'\n  file: d/x.tgz\n- k: nn\n  st: [a]\nlast: z\nstack: cflinuxfs4\n"
        );
        let root = parse(&out).expect("yaml").expect("doc");
        let mut e = Editor::new(&out);
        e.remove_item(node(&root, "m"), 0).expect("rm");
        assert!(e
            .finish()
            .expect("finish")
            .contains("l:\n  - x  # ex\n  - y\nm:\n- k: nn\n"));
    }

    #[test]
    fn refuses_what_it_cannot_edit_safely() {
        let text = "a: &x 1\nb: *x\nc: |\n  block\nd: {k: v}\n";
        let root = parse(text).expect("yaml").expect("doc");
        let mut e = Editor::new(text);
        assert!(e.set_scalar(node(&root, "a"), "2").is_err());
        assert!(e.set_scalar(node(&root, "b"), "2").is_err());
        assert!(e.set_scalar(node(&root, "c"), "2").is_err());
        assert!(e
            .insert_entry(node(&root, "d"), "z", &Value::Scalar("1".into()))
            .is_err());
    }

    #[test]
    fn scalars_read_back_as_the_same_string() {
        for (value, want) in [
            ("0.1.0", "0.1.0"),
            ("1.10", "\"1.10\""),
            ("true", "\"true\""),
            ("https://h/a-1.tgz", "https://h/a-1.tgz"),
            ("a #b", "\"a #b\""),
            ("x: y", "\"x: y\""),
            ("", "\"\""),
            ("line\nbreak", "\"line\\u000abreak\""),
            ("-dash", "\"-dash\""),
        ] {
            assert_eq!(scalar(value, Style::Plain), want, "{value:?}");
            let doc = format!("k: {want}\n");
            let root = parse(&doc).expect("yaml").expect("doc");
            assert_eq!(node(&root, "k").as_str(), Some(value), "{doc}");
        }
    }
}
