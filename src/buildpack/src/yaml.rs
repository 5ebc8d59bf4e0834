//! A YAML document as a tree of nodes that know where they are in the source text.
//! serde_yaml gives types but no positions; saphyr-parser's events carry them. The
//! tree serves two owners of `manifest.yml`: error messages that name the real line
//! and column of a key (`de` reads the manifest's types over it, to say why serde_yaml
//! refused one), and the manifest tool, which edits a value by replacing its bytes so
//! that every comment and the order of the file stay as they were.

use saphyr_parser::{Event, ScalarStyle, Span};

pub mod de;

/// Deeper nesting than this is refused (serde_yaml stops at 128 too), so a hostile
/// document cannot overflow the stack when the tree is walked or dropped.
const MAX_DEPTH: usize = 128;

/// A node and its place in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Byte offset of the node's first character (a block sequence's first `-`).
    pub start: usize,
    /// Byte offset just past the node's last character (comments not included).
    pub end: usize,
    /// Where `start` is: 1-based line and column (in characters).
    pub line: usize,
    pub column: usize,
    /// The id of the node's `&anchor`, if it carries one (so that an alias may share
    /// it): unique to each anchor written, as the parser numbers them.
    pub anchor: Option<usize>,
    /// Cut short by a syntax error (`parse_prefix`): a collection whose items after its
    /// last were not read, or the value of a key that the error comes right after.
    pub cut: bool,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Scalar {
        value: String,
        style: Style,
        /// Its tag (`!!str`, `!local`), resolved: `tag:yaml.org,2002:str`, `!local`.
        tag: Option<String>,
    },
    Sequence {
        flow: bool,
        items: Vec<Node>,
    },
    Mapping {
        flow: bool,
        entries: Vec<(Node, Node)>,
    },
    /// `*name`: the node whose `anchor` is this id.
    Alias {
        anchor: usize,
    },
}

/// How a scalar is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>`.
    Block,
}

/// Why the text is not YAML, or is more than a manifest may hold, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line} column {column}")]
pub struct SyntaxError {
    pub message: String,
    pub line: usize,
    pub column: usize,
    /// Past a cap on what a reader should hold (see `check_cost`), not a syntax error.
    pub over_a_cap: bool,
}

/// Most flow collections saphyr keeps open at once: its flow level is a `u8`, and the
/// next `[` or `{` is an error ("recursion limit exceeded").
const SAPHYR_MAX_FLOW_LEVEL: isize = u8::MAX as isize;

/// Whether saphyr's error `e` is its limit on nested flow collections, told from where
/// it is, not from its words: at a `[` or `{` that, counting the brackets before it,
/// opens more flow collections than saphyr keeps. (A bracket in a quoted value or a
/// comment counts too; that could only call some other error at such a `[` this one.)
fn past_saphyr_flow_limit(text: &str, e: &saphyr_parser::ScanError) -> bool {
    let at = e.marker().index();
    let mut open = 0isize;
    for (i, c) in text.chars().enumerate().take(at.saturating_add(1)) {
        match c {
            '[' | '{' => open += 1,
            ']' | '}' => open -= 1,
            _ => {}
        }
        if i == at {
            return matches!(c, '[' | '{') && open > SAPHYR_MAX_FLOW_LEVEL;
        }
    }
    false
}

use yaml_guard::Events;
pub use yaml_guard::MAX_FLOW_AHEAD;

/// A manifest may hold at most this many values (scalars, sequences, mappings, alias
/// uses). serde_yaml keeps every event of the document in memory before it reads the
/// first, at about a hundred bytes each whatever the text: this bounds it to some
/// 5 MB. A real buildpack manifest holds a few thousand.
pub const MAX_VALUES: usize = 50_000;

/// Fails if `text` is more than a loader should take on: nested deeper than
/// `MAX_DEPTH`, more than `MAX_VALUES` values, or more than `MAX_FLOW_AHEAD` flow
/// indicators read ahead. It reads events only as far as that, before any other
/// parser sees the text: serde_yaml's parser (libyaml) takes time quadratic in the
/// depth of flow collections before its own limit applies (300,000 `[` in a 600 KB
/// manifest kept supply busy for many minutes), and memory linear in the values. Any
/// other syntax error is left to serde_yaml, whose words the manifest's messages use.
pub fn check_cost(text: &str) -> Result<(), SyntaxError> {
    let mut depth = 0usize;
    let mut values = 0usize;
    let mut events = Events::new(text);
    while let Some(event) = events.next() {
        match event {
            Ok((event, span)) => {
                let start = (span.start.line(), span.start.col() + 1);
                if is_value(&event) {
                    values += 1;
                    if values > MAX_VALUES {
                        return Err(too_many_values(start));
                    }
                }
                match event {
                    Event::SequenceStart(..) | Event::MappingStart(..) => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return Err(too_deep(start));
                        }
                    }
                    Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
                    Event::StreamEnd => break,
                    _ => {}
                }
            }
            Err(_) if events.cut() => break,
            // saphyr's own limit on nesting, reached while scanning.
            Err(e) if past_saphyr_flow_limit(text, &e) => {
                return Err(too_deep((e.marker().line(), e.marker().col() + 1)))
            }
            Err(_) => break,
        }
    }
    if events.cut() {
        return Err(flow_too_long(&events));
    }
    Ok(())
}

fn over_a_cap(message: String, (line, column): (usize, usize)) -> SyntaxError {
    SyntaxError {
        message,
        line,
        column,
        over_a_cap: true,
    }
}

/// True for the events that start a value: what `MAX_VALUES` counts.
fn is_value(event: &Event<'_>) -> bool {
    matches!(
        event,
        Event::SequenceStart(..) | Event::MappingStart(..) | Event::Scalar(..) | Event::Alias(..)
    )
}

fn too_many_values(at: (usize, usize)) -> SyntaxError {
    over_a_cap(
        format!(
            "holds more than {MAX_VALUES} values (scalars, lists and mappings), the one that \
             passes the cap"
        ),
        at,
    )
}

fn too_deep(at: (usize, usize)) -> SyntaxError {
    over_a_cap(format!("nested deeper than {MAX_DEPTH} levels"), at)
}

fn flow_too_long(events: &Events<'_>) -> SyntaxError {
    over_a_cap(
        format!(
            "holds more than {MAX_FLOW_AHEAD} commas and brackets before its next value is \
             complete, all of which the YAML reader would keep in memory (a flow collection \
             [...] or {{...}} inside another, or a string, is read whole: write such a list \
             in block style, one '- item' per line); they follow the value that ends"
        ),
        (events.last_end().line(), events.last_end().col() + 1),
    )
}

/// Parses the first document of `text`; `None` for an empty stream.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    match parse_prefix(text) {
        (root, None) => Ok(root),
        (_, Some(e)) => Err(e),
    }
}

/// The first document of `text` as far as it is YAML, and the error that ends it
/// there, if one does: serde_yaml reads a document up to its error too, and reports a
/// wrong value before it first. The collections the error cuts short are marked `cut`.
pub fn parse_prefix(text: &str) -> (Option<Node>, Option<SyntaxError>) {
    let offsets = CharOffsets::new(text);
    // libyaml, which loads the manifest (serde_yaml), reads a tab after `:` as a space;
    // saphyr refuses `key:<tab>value`. A space in its place has the same length, so
    // every offset still points into `text`. (Values that hold `:<tab>` read here with
    // a space: the tool edits none of them, as manifest values hold no control character.)
    let spaced = text.contains(":\t").then(|| text.replace(":\t", ": "));
    let read = spaced.as_deref().unwrap_or(text);
    // libyaml reads a byte order mark inside a line as text (`x\u{feff}y`); saphyr
    // refuses it outside quotes, after the text before it in a plain scalar (whose
    // value would then be read short). A stand-in of the same length is read in its
    // place, and put back in the scalars.
    let bom = BomStandIn::new(read);
    let read = bom.as_ref().map_or(read, |b| b.text.as_str());
    let mut stack: Vec<Partial> = Vec::new();
    let mut root = None;
    let mut values = 0usize;
    let mut error = None;
    // The same caps as `check_cost`: the packager's editor reads files supply never did.
    let mut events = Events::new(read);
    while let Some(event) = events.next() {
        let (event, span) = match event {
            Ok(read) => read,
            Err(e) => {
                error = Some(if events.cut() {
                    flow_too_long(&events)
                } else if past_saphyr_flow_limit(text, &e) {
                    too_deep((e.marker().line(), e.marker().col() + 1))
                } else {
                    SyntaxError {
                        message: e.info().to_string(),
                        line: e.marker().line(),
                        column: e.marker().col() + 1,
                        over_a_cap: false,
                    }
                });
                break;
            }
        };
        if is_value(&event) {
            values += 1;
            if values > MAX_VALUES {
                error = Some(too_many_values((span.start.line(), span.start.col() + 1)));
                break;
            }
        }
        let node = match event {
            Event::StreamEnd | Event::DocumentEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) => continue,
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    error = Some(too_deep((span.start.line(), span.start.col() + 1)));
                    break;
                }
                let is_map = matches!(event, Event::MappingStart(..));
                // The span covers the node's properties (`&anchor`, `!tag`) too: a flow
                // collection starts at the bracket that ends it, a block one after it.
                let (from, to) = (
                    offsets.byte(span.start.index()),
                    offsets.byte(span.end.index()),
                );
                let props = text[from..to].trim_end();
                let flow = props.ends_with(if is_map { '{' } else { '[' });
                let (start, line, column) = if flow {
                    (from + props.len() - 1, span.end.line(), span.end.col())
                } else if props.is_empty() {
                    (from, span.start.line(), span.start.col() + 1)
                } else {
                    (to, span.end.line(), span.end.col() + 1)
                };
                stack.push(Partial {
                    node: Node {
                        start,
                        end: start,
                        line,
                        column,
                        anchor: (anchor != 0).then_some(anchor),
                        cut: false,
                        kind: if is_map {
                            Kind::Mapping {
                                flow,
                                entries: Vec::new(),
                            }
                        } else {
                            Kind::Sequence {
                                flow,
                                items: Vec::new(),
                            }
                        },
                    },
                    pending_key: None,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(mut done) = stack.pop() else {
                    continue;
                };
                let flow = matches!(
                    done.node.kind,
                    Kind::Sequence { flow: true, .. } | Kind::Mapping { flow: true, .. }
                );
                if flow {
                    // The end event's span runs on over a comment after the bracket.
                    done.node.end = offsets.byte(span.start.index()) + 1;
                } else if let Kind::Sequence { items, .. } = &done.node.kind {
                    // saphyr starts an indented block sequence at its `-` and one at
                    // the parent's indent at its first item: always use the `-`.
                    if let Some(first) = items.first() {
                        let before = text[..first.start].trim_end();
                        if before.ends_with('-') && first.start < done.node.start + 1 {
                            done.node.start = before.len() - 1;
                            (done.node.line, done.node.column) =
                                offsets.line_column(done.node.start);
                        }
                    }
                }
                done.node
            }
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let (value, tag) = match &bom {
                    Some(b) => (b.put_back(&value), tag.map(|t| b.put_back(&t))),
                    None => (value.into_owned(), tag),
                };
                // Where the token before it ends: a block scalar's `|` or `>` is after.
                let after = stack.last().map_or(0, Partial::read_to);
                scalar(text, &offsets, (span, after), (value, style, tag), anchor)
            }
            Event::Alias(anchor) => Node {
                start: offsets.byte(span.start.index()),
                end: offsets.byte(span.end.index()),
                line: span.start.line(),
                column: span.start.col() + 1,
                anchor: None,
                cut: false,
                kind: Kind::Alias { anchor },
            },
        };
        if let Some(parent) = stack.last_mut() {
            parent.add(node);
        } else {
            root = Some(node);
            break;
        }
    }
    if error.is_some() {
        while let Some(mut open) = stack.pop() {
            // A key whose value the error cuts off is there, with a value that is `cut`.
            if let Some(key) = open.pending_key.take() {
                let missing = Node {
                    start: key.end,
                    end: key.end,
                    line: key.line,
                    column: key.column,
                    anchor: None,
                    cut: true,
                    kind: Kind::Scalar {
                        value: String::new(),
                        style: Style::Plain,
                        tag: None,
                    },
                };
                open.add(key);
                open.add(missing);
            }
            open.node.cut = true;
            match stack.last_mut() {
                Some(parent) => parent.add(open.node),
                None => root = Some(open.node),
            }
        }
    }
    (root, error)
}

/// A scalar node from its event's value, style and tag.
fn scalar(
    text: &str,
    offsets: &CharOffsets,
    (span, after): (Span, usize),
    (value, style, tag): (String, ScalarStyle, Option<String>),
    anchor: usize,
) -> Node {
    let mut start = offsets.byte(span.start.index());
    let mut end = offsets.byte(span.end.index());
    let (mut line, mut column) = (span.start.line(), span.start.col() + 1);
    let style = match style {
        ScalarStyle::Plain => Style::Plain,
        ScalarStyle::SingleQuoted => Style::SingleQuoted,
        ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
        _ => Style::Block,
    };
    // saphyr starts a block scalar at its first line of text, or at whatever follows
    // when it has none (the next key): it starts at its `|` or `>`, as libyaml says.
    if style == Style::Block {
        if let Some(header) = block_header(text, after.min(start), start.max(end)) {
            start = header;
            (line, column) = offsets.line_column(start);
        }
    }
    // The parser's span of a quoted scalar can run on over the spaces and comment
    // that follow it; the closing quote is where it really ends. A block scalar's runs
    // on over the line breaks, blank lines and indent after its last line.
    if let Some(close) = closing_quote(&text[start..], style) {
        end = start + close + 1;
    } else if style == Style::Block && start <= end {
        end = start + text[start..end].trim_end().len();
    }
    Node {
        start,
        end,
        line,
        column,
        anchor: (anchor != 0).then_some(anchor),
        cut: false,
        kind: Kind::Scalar { value, style, tag },
    }
}

/// The byte offset of the `|` or `>` that starts a block scalar, between the end of the
/// token before it (`after`) and the end of its span (`before`): past the `:` `-` `?`
/// or `---` that introduce it, its tag and anchor, and a comment line.
fn block_header(text: &str, after: usize, before: usize) -> Option<usize> {
    let bytes = text.as_bytes().get(after..before)?;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let to = |stop: &dyn Fn(u8) -> bool| {
            i + bytes[i..]
                .iter()
                .position(|&c| stop(c))
                .unwrap_or(bytes.len() - i)
        };
        i = match b {
            b'|' | b'>' => return Some(after + i),
            b' ' | b'\t' | b'\n' | b'\r' => i + 1,
            b'#' => to(&|c| c == b'\n' || c == b'\r'),
            b':' | b'-' | b'?' | b'!' | b'&' => to(&|c| c.is_ascii_whitespace()),
            _ => return None,
        };
    }
    None
}

/// The byte index of the quote that closes the quoted scalar at the start of `s`.
fn closing_quote(s: &str, style: Style) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    match style {
        Style::DoubleQuoted => {
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => return Some(i),
                    _ => i += 1,
                }
            }
        }
        Style::SingleQuoted => {
            while i < bytes.len() {
                if bytes[i] == b'\'' {
                    if bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Some(i);
                }
                i += 1;
            }
        }
        _ => {}
    }
    None
}

/// A collection whose children are still being read.
struct Partial {
    node: Node,
    pending_key: Option<Node>,
}

/// A character that `text` does not hold, read in place of each byte order mark that
/// is not at the start of a line (where saphyr skips one, and libyaml too).
struct BomStandIn {
    stand_in: char,
    text: String,
}

impl BomStandIn {
    fn new(text: &str) -> Option<Self> {
        if !text.contains('\u{feff}') {
            return None;
        }
        // A private-use character: three bytes in UTF-8, as U+FEFF is, so every offset
        // still points into `text`. The first the text does not hold, found in one pass.
        const FIRST: u32 = 0xE000;
        let mut used = vec![false; 0x1900];
        for c in text.chars() {
            if let Some(slot) = (c as u32).checked_sub(FIRST) {
                if let Some(u) = used.get_mut(slot as usize) {
                    *u = true;
                }
            }
        }
        let stand_in = (0..used.len())
            .find(|&i| !used[i])
            .and_then(|i| char::from_u32(FIRST + i as u32))?;
        let mut out = String::with_capacity(text.len());
        let mut line_start = true;
        for c in text.chars() {
            out.push(if c == '\u{feff}' && !line_start {
                stand_in
            } else {
                c
            });
            line_start = matches!(c, '\n' | '\r');
        }
        Some(BomStandIn {
            stand_in,
            text: out,
        })
    }

    fn put_back(&self, value: &str) -> String {
        value.replace(self.stand_in, "\u{feff}")
    }
}

impl Partial {
    /// Where the last token read in this collection ends: its pending key, its last
    /// child, or its own start.
    fn read_to(&self) -> usize {
        let last = match &self.node.kind {
            _ if self.pending_key.is_some() => self.pending_key.as_ref(),
            Kind::Sequence { items, .. } => items.last(),
            Kind::Mapping { entries, .. } => entries.last().map(|(_, v)| v),
            Kind::Scalar { .. } | Kind::Alias { .. } => None,
        };
        last.map_or(self.node.start, |n| n.end)
    }

    fn add(&mut self, child: Node) {
        if let Kind::Sequence { flow: false, .. } | Kind::Mapping { flow: false, .. } =
            self.node.kind
        {
            self.node.end = self.node.end.max(child.end);
        }
        match &mut self.node.kind {
            Kind::Sequence { items, .. } => items.push(child),
            Kind::Mapping { entries, .. } => match self.pending_key.take() {
                None => self.pending_key = Some(child),
                Some(key) => entries.push((key, child)),
            },
            _ => {}
        }
    }
}

/// saphyr counts in characters; Rust strings are sliced in bytes. Both ways, and lines,
/// by lookup: a walk of the text per node would take quadratic time on a large file.
struct CharOffsets {
    /// The byte offset of each character, then the text's length.
    bytes: Vec<usize>,
    /// The character index at which each line starts.
    lines: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        let mut lines = vec![0];
        let mut chars = text.char_indices().enumerate().peekable();
        while let Some((i, (b, c))) = chars.next() {
            bytes.push(b);
            // A line ends at `\n`, `\r\n` or a lone `\r`, as saphyr counts them.
            let lone_cr = c == '\r' && chars.peek().is_none_or(|(_, (_, n))| *n != '\n');
            if c == '\n' || lone_cr {
                lines.push(i + 1);
            }
        }
        bytes.push(text.len());
        CharOffsets { bytes, lines }
    }

    fn byte(&self, char_index: usize) -> usize {
        self.bytes
            .get(char_index)
            .copied()
            .unwrap_or_else(|| self.bytes.last().copied().unwrap_or(0))
    }

    /// The 1-based line and column (in characters) of a byte offset.
    fn line_column(&self, byte: usize) -> (usize, usize) {
        let char_index = self.bytes.partition_point(|&b| b < byte);
        let line = self.lines.partition_point(|&start| start <= char_index);
        (line, char_index - self.lines[line - 1] + 1)
    }
}

/// Whether libyaml and saphyr may read `text` apart where neither refuses it, so that a
/// value read over our tree may not be the one serde_yaml refused:
/// - an anchor or alias name: libyaml (YAML 1.1) ends one at the first character that
///   is not a letter, digit, `-` or `_`, and takes `:` `?` `%` `@` or a backquote right
///   after it; saphyr (YAML 1.2) reads on to a blank or a flow indicator. In
///   `- &base: x` libyaml anchors an empty key, saphyr the value `x` as `base:`. Any
///   `&` or `*` that starts a token so followed counts, in a comment or a quoted value
///   too (it errs only towards saying so);
/// - NEL, LS or PS (U+0085, U+2028, U+2029): line breaks to libyaml, text to saphyr.
///
/// In one pass.
pub fn may_read_apart(text: &str) -> bool {
    if text.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        return true;
    }
    let bytes = text.as_bytes();
    let mut after_blank = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if after_blank && (b == b'&' || b == b'*') {
            let name = bytes[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'-' || **c == b'_')
                .count();
            let next = bytes.get(i + 1 + name);
            if name > 0 && matches!(next, Some(b':' | b'?' | b'%' | b'@' | b'`')) {
                return true;
            }
        }
        after_blank = matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',');
        i += 1;
    }
    false
}

/// One step of a key path such as `dependencies[0].sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Splits `a.b[2].c` into its steps (serde_yaml's way of naming a key).
pub fn path_steps(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            steps.push(Step::Key(name.to_string()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            match index.parse() {
                Ok(i) => steps.push(Step::Index(i)),
                Err(_) => steps.push(Step::Key(index.to_string())),
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    steps
}

impl Node {
    /// Whether libyaml (YAML 1.1) and saphyr (YAML 1.2) read a flow collection of this
    /// document (`text`) apart: a plain scalar in one that starts with `?` or `:` is an
    /// indicator to libyaml (`[?x]` is `[{x: null}]` to it), text to saphyr; and a key
    /// whose `:` is on a later line is a key without a value to libyaml, followed by a
    /// value without a key.
    pub fn flow_reads_apart(&self, text: &str) -> bool {
        fn within(node: &Node, in_flow: bool, text: &str) -> bool {
            match &node.kind {
                Kind::Scalar {
                    value,
                    style: Style::Plain,
                    ..
                } => in_flow && value.starts_with(['?', ':']),
                Kind::Sequence { flow, items } => {
                    items.iter().any(|n| within(n, in_flow || *flow, text))
                }
                Kind::Mapping { flow, entries } => entries.iter().any(|(k, v)| {
                    let flow = in_flow || *flow;
                    let before_colon = text
                        .get(k.end..v.start.max(k.end))
                        .and_then(|between| between.split(':').next());
                    (flow && before_colon.is_some_and(|b| b.contains(['\n', '\r'])))
                        || within(k, flow, text)
                        || within(v, flow, text)
                }),
                Kind::Scalar { .. } | Kind::Alias { .. } => false,
            }
        }
        within(self, false, text)
    }

    /// Whether the node carries an `&anchor`, so that an alias may share it.
    pub fn anchored(&self) -> bool {
        self.anchor.is_some()
    }

    /// The scalar's text, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The entries of a mapping whose key is `key`: more than one is a duplicate.
    pub fn entries_named(&self, key: &str) -> Vec<&(Node, Node)> {
        match &self.kind {
            Kind::Mapping { entries, .. } => entries
                .iter()
                .filter(|(k, _)| k.as_str() == Some(key))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The value of `key` in a mapping (the first, if it is there twice).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Mapping { entries, .. } => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The items of a sequence (none for anything else).
    pub fn items(&self) -> &[Node] {
        match &self.kind {
            Kind::Sequence { items, .. } => items,
            _ => &[],
        }
    }

    /// The node at a key path; `None` if any step is missing.
    pub fn at(&self, steps: &[Step]) -> Option<&Node> {
        steps.iter().try_fold(self, |node, step| match step {
            Step::Key(k) => node.get(k),
            Step::Index(i) => node.items().get(*i),
        })
    }

    /// The deepest node along a key path that exists: where a message about that
    /// path should point when the path itself ends in a missing key.
    pub fn nearest(&self, steps: &[Step]) -> &Node {
        let mut node = self;
        for step in steps {
            let next = match step {
                Step::Key(k) => node.get(k),
                Step::Index(i) => node.items().get(*i),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_count_values_and_flow_indicators_read_ahead() {
        // The root mapping, the key and the list are values too.
        let block = |n: usize| format!("x:\n{}", "- a\n".repeat(n));
        check_cost(&block(MAX_VALUES - 3)).expect("at the cap");
        let e = check_cost(&block(MAX_VALUES - 2)).expect_err("past it");
        assert!(
            e.over_a_cap && e.message.contains("more than 50000 values"),
            "{e}"
        );
        assert!(
            parse(&block(MAX_VALUES - 2)).is_err(),
            "the editor's parser too"
        );
        // A flat flow list hands over each item as it goes, however long.
        check_cost(&format!("x: [{}a]\n", "a,".repeat(40_000))).expect("flat");
        // One inside another is read whole before its first item.
        let nested = |n: usize| format!("x: [[{}a]]\n", "a,".repeat(n));
        check_cost(&nested(MAX_FLOW_AHEAD - 4)).expect("under the cap");
        let e = check_cost(&nested(MAX_FLOW_AHEAD + 100)).expect_err("past it");
        assert!(
            e.over_a_cap && e.message.contains("more than 8192 commas"),
            "{e}"
        );
        assert!(
            parse(&nested(MAX_FLOW_AHEAD + 100)).is_err(),
            "the editor's parser too"
        );
    }

    #[test]
    fn the_scanners_nesting_limit_is_told_from_where_it_is() {
        // Past saphyr's limit, in one flow collection inside the next: too deep, at the
        // `[` that passes it, whatever saphyr words it as.
        let deep = |n: usize| format!("x: {}{}\n", "[".repeat(n), "]".repeat(n));
        let e = check_cost(&deep(300)).expect_err("too deep");
        assert!(
            e.over_a_cap && e.message.starts_with("nested deeper"),
            "{e}"
        );
        assert_eq!((e.line, e.column), (1, 4 + 255), "{e}");
        let e = parse(&deep(300)).expect_err("too deep");
        assert!(
            e.over_a_cap && e.message.starts_with("nested deeper"),
            "{e}"
        );
        // Another error at a `[`, with fewer open: a syntax error, left to serde_yaml.
        let bad = format!("x: {}{}\n", "[a], ".repeat(300), "[a]]");
        assert!(check_cost(&bad).is_ok());
        let e = parse(&bad).expect_err("syntax");
        assert!(!e.over_a_cap, "{e}");
        for text in ["[[a]", "x: [a\ny: b\n", "x: [a, {b: [c}]\n"] {
            let e = parse(text).expect_err(text);
            assert!(!e.over_a_cap, "{text}: {e}");
        }
    }

    fn doc(text: &str) -> Node {
        parse(text).expect("yaml").expect("a document")
    }

    #[test]
    fn nodes_know_their_line_column_and_bytes() {
        let text = "# é comment\nlist:\n- name: x   # trailing\n  uri: \"q \\\" r\"  # c\n";
        let root = doc(text);
        let uri = root.at(&path_steps("list[0].uri")).expect("uri");
        assert_eq!((uri.line, uri.column), (4, 8));
        assert_eq!(&text[uri.start..uri.end], "\"q \\\" r\"");
        assert_eq!(uri.as_str(), Some("q \" r"));
        let item = root.at(&path_steps("list[0]")).expect("item");
        assert_eq!((item.line, item.column), (3, 3));
        assert_eq!(
            &text[item.start..item.end],
            "name: x   # trailing\n  uri: \"q \\\" r\""
        );
    }

    #[test]
    fn flow_and_block_collections() {
        let text = "a: [x, 'y''s' ]\nb:\n  - 1\n  - 2\nc: {k: v}\n";
        let root = doc(text);
        let a = root.get("a").expect("a");
        assert!(matches!(a.kind, Kind::Sequence { flow: true, .. }));
        assert_eq!(&text[a.start..a.end], "[x, 'y''s' ]");
        assert_eq!(&text[a.items()[1].start..a.items()[1].end], "'y''s'");
        let b = root.get("b").expect("b");
        assert!(matches!(b.kind, Kind::Sequence { flow: false, .. }));
        assert_eq!(&text[b.start..b.end], "- 1\n  - 2");
        let top = doc("l:\n- a\n- b\n");
        let l = top.get("l").expect("l");
        assert_eq!((l.start, l.line, l.column), (3, 2, 1));
        let c = root.get("c").expect("c");
        assert!(matches!(c.kind, Kind::Mapping { flow: true, .. }));
    }

    #[test]
    fn duplicates_and_missing_paths() {
        let root = doc("a: 1\nb: 2\na: 3\n");
        let dups: Vec<_> = root
            .entries_named("a")
            .iter()
            .map(|(k, _)| k.line)
            .collect();
        assert_eq!(dups, vec![1, 3]);
        assert!(root.at(&path_steps("b.c")).is_none());
        assert_eq!(root.nearest(&path_steps("b.c")).line, 2);
    }

    #[test]
    fn syntax_errors_and_bombs() {
        let e = parse("a: [1,\nb: 2\n").expect_err("unclosed");
        assert!(e.line >= 1, "{e}");
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err());
        // Aliases are not expanded: a billion-laughs document is small here.
        let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n";
        assert!(parse(bomb).is_ok());
        assert_eq!(parse("").expect("empty"), None);
    }

    #[test]
    fn a_prefix_ends_at_the_syntax_error() {
        let (root, error) = parse_prefix("a: 1\nb: [x, y\nc: 2\n");
        assert!(error.is_some());
        let root = root.expect("what came before");
        assert!(root.cut && root.get("a").is_some_and(|a| !a.cut));
        let b = root.get("b").expect("b");
        assert!(b.cut && b.items()[0].as_str() == Some("x"), "{b:?}");
        // A key whose value the error cuts off is there, with a cut value.
        let (root, _) = parse_prefix("a: 1\nb: *nowhere\n");
        let b = root.expect("root").get("b").cloned().expect("b");
        assert!(b.cut && b.as_str() == Some(""), "{b:?}");
        // A whole document has nothing cut.
        let (root, error) = parse_prefix("a: [x]\n");
        assert!(error.is_none() && !root.expect("root").cut);
        let tagged = doc("a: !!str 5\nb: !local x\n");
        assert!(matches!(
            &tagged.get("a").expect("a").kind,
            Kind::Scalar { tag: Some(t), .. } if t == "tag:yaml.org,2002:str"
        ));
        assert!(matches!(
            &tagged.get("b").expect("b").kind,
            Kind::Scalar { tag: Some(t), .. } if t == "!local"
        ));
    }

    #[test]
    fn a_byte_order_mark_inside_a_line_is_text_as_libyaml_reads_it() {
        // In a plain scalar, a flow one, a quoted one; and beside the first stand-in,
        // which the text holds already (the next one is used).
        let text = "a: x\u{feff}y\nb: [p \u{feff}, 'q\u{feff}']\nc: \u{e000}\u{feff}\n";
        let libyaml: serde_yaml::Value = serde_yaml::from_str(text).expect("libyaml reads it");
        let root = doc(text);
        for key in ["a", "c"] {
            let node = root.get(key).expect(key);
            assert_eq!(node.as_str(), libyaml[key].as_str(), "{key}");
            assert_eq!(Some(&text[node.start..node.end]), node.as_str(), "{key}");
        }
        let b: Vec<_> = root
            .get("b")
            .expect("b")
            .items()
            .iter()
            .map(Node::as_str)
            .collect();
        assert_eq!(b, [Some("p \u{feff}"), Some("q\u{feff}")]);
        assert_eq!(libyaml["b"][0].as_str(), Some("p \u{feff}"));
    }

    #[test]
    fn texts_that_the_parsers_read_apart() {
        for apart in [
            "a: x\u{2028}  y\n",
            "a: x\u{85}y\n",
            "a: 'x\u{2029}'\n",
            "- &base: x\n",
            "a: *b:\n",
            "[&x?]",
            "a: &n@\n",
            "# see &x: y\n",
        ] {
            assert!(may_read_apart(apart), "{apart}");
        }
        for alike in [
            "a: &base x\nb: *base\n",
            "[&x, *x]",
            "{a: &x-y_1 b}",
            "uri: https://h/?a=1&b:2\n",
            "a: x&y:\n",
            "a: & b\n",
            "a: **bold**:\n",
        ] {
            assert!(!may_read_apart(alike), "{alike}");
        }
    }

    #[test]
    fn a_block_scalar_starts_at_its_indicator() {
        let text = "a: |\n   x\nb: >-  # folded\n\n  y\nc: !!str |\nd:\n- |\n- &e >\n  z\n";
        let root = doc(text);
        let at = |n: &Node| (n.line, n.column, &text[n.start..n.end]);
        assert_eq!(at(root.get("a").expect("a")), (1, 4, "|\n   x"));
        assert_eq!(at(root.get("b").expect("b")), (3, 4, ">-  # folded\n\n  y"));
        // With no text, not at the key that follows.
        assert_eq!(at(root.get("c").expect("c")), (6, 10, "|"));
        let d = root.get("d").expect("d");
        assert_eq!(at(&d.items()[0]), (8, 3, "|"));
        assert_eq!(at(&d.items()[1]), (9, 6, ">\n  z"));
        assert_eq!((d.line, d.column), (8, 1), "the list at its first '-'");
    }

    #[test]
    fn a_plain_scalar_that_starts_with_an_indicator_in_a_flow_collection() {
        for apart in [
            "a: [?x]\n",
            "a: {b: [c, ':d']}\nx: [:y]\n",
            "- {?k: v}\n",
            "- {k\n  : v}\n",
        ] {
            assert!(doc(apart).flow_reads_apart(apart), "{apart}");
        }
        for alike in [
            "a: ?x\n",
            "a: ['?x', \"?y\", a:b, x?]\n",
            "? x\n: y\n",
            "- {k:\n  v, w: 'x:\n y'}\n",
            "a\n: b\n",
        ] {
            assert!(!doc(alike).flow_reads_apart(alike), "{alike}");
        }
    }

    #[test]
    fn key_paths() {
        assert_eq!(
            path_steps("dependencies[0].sha256"),
            vec![
                Step::Key("dependencies".into()),
                Step::Index(0),
                Step::Key("sha256".into())
            ]
        );
        assert_eq!(
            path_steps("a[1][2]"),
            vec![Step::Key("a".into()), Step::Index(1), Step::Index(2)]
        );
    }
}
