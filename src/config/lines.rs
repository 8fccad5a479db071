//! Finding the line a setting or a route key is on, so errors found after parsing (a bad URL, a contradiction)
//! can still say "line N". serde gives locations only for the errors it finds itself.
//!
//! This reads block-style YAML, the way configuration files are written. When the text is in another style (flow
//! lists, anchors) the locator finds fewer items than the parser did and answers `None`: no line rather than a
//! wrong one.

/// 1-based line of a top-level `key:` in a YAML mapping.
pub(crate) fn top_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| starts_with_key(l, key))
        .map(|i| i + 1)
}

fn starts_with_key(line: &str, key: &str) -> bool {
    let unquoted = line.strip_prefix(key);
    let quoted = || {
        line.strip_prefix(&format!("\"{key}\""))
            .or_else(|| line.strip_prefix(&format!("'{key}'")))
    };
    match unquoted.or_else(quoted) {
        Some(rest) => rest.trim_start_matches([' ', '\t']).starts_with(':'),
        None => false,
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_item(trimmed: &str) -> bool {
    trimmed == "-" || trimmed.starts_with("- ")
}

/// The lines of each item of a block list: the top-level list (env POLICY) or the list under a top-level key.
#[derive(Clone, Debug, Default)]
pub(crate) struct ItemLines {
    /// (first line, one past the last line), 1-based.
    items: Vec<(usize, usize)>,
    lines: Vec<String>,
}

impl ItemLines {
    /// Locate the items; `expected` is how many the parser found (a mismatch means we cannot trust our count).
    pub(crate) fn find(text: &str, under_key: Option<&str>, expected: usize) -> ItemLines {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut start = 0;
        if let Some(key) = under_key {
            match lines.iter().position(|l| starts_with_key(l, key)) {
                Some(i) => start = i + 1,
                None => return ItemLines::default(),
            }
        }
        let mut items: Vec<(usize, usize)> = Vec::new();
        let mut item_indent = None;
        let mut end = lines.len();
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty()
                || trimmed.starts_with('#')
                || (under_key.is_none() && line.starts_with("---"))
            {
                continue;
            }
            let ind = indent(line);
            match item_indent {
                None if is_item(trimmed) => {
                    item_indent = Some(ind);
                    items.push((i + 1, 0));
                }
                None => return ItemLines::default(),
                Some(want) if ind == want && is_item(trimmed) => items.push((i + 1, 0)),
                Some(want) if ind <= want => {
                    end = i;
                    break;
                }
                Some(_) => {}
            }
        }
        if items.len() != expected {
            return ItemLines::default();
        }
        let starts: Vec<usize> = items.iter().map(|(s, _)| *s).collect();
        for (k, item) in items.iter_mut().enumerate() {
            item.1 = starts.get(k + 1).copied().unwrap_or(end + 1);
        }
        ItemLines { items, lines }
    }

    /// Line where item `index` (0-based) starts.
    #[cfg(test)]
    pub(crate) fn item(&self, index: usize) -> Option<usize> {
        self.items.get(index).map(|(s, _)| *s)
    }

    /// Line of `key:` inside item `index` (0-based), looking only at the item's own keys (not at keys of maps
    /// nested in it); the item's first line if the key is not found.
    pub(crate) fn key(&self, index: usize, key: &str) -> Option<usize> {
        let (first, past) = *self.items.get(index)?;
        let line_at = |n: usize| self.lines.get(n.checked_sub(1)?).map(String::as_str);
        let first_line = line_at(first)?;
        let dash = indent(first_line);
        let after_dash = first_line.get(dash + 1..).unwrap_or("");
        let inline_key = after_dash.trim_start();
        // The column of the item's keys: where the first key after `- ` starts, or the next line's indent.
        let key_col = if inline_key.is_empty() || inline_key.starts_with('#') {
            (first + 1..past)
                .filter_map(line_at)
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(indent)?
        } else {
            dash + 1 + (after_dash.len() - inline_key.len())
        };
        if starts_with_key(inline_key, key) {
            return Some(first);
        }
        let found = (first + 1..past).find(|&n| {
            line_at(n).is_some_and(|l| indent(l) == key_col && starts_with_key(l.trim_start(), key))
        });
        found.or(Some(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "address: :8443\n# comment\npolicy:\n  - from: https://a.example\n    to: http://a\n\n  - from: https://b.example\n    to: http://b\n    allowed_users:\n      - x@y.z\nlog_level: debug\n";
        assert_eq!(top_key_line(text, "address"), Some(1));
        assert_eq!(top_key_line(text, "log_level"), Some(11));
        assert_eq!(top_key_line(text, "policy"), Some(3));
        assert_eq!(top_key_line(text, "to"), None);
        let items = ItemLines::find(text, Some("policy"), 2);
        assert_eq!(items.item(0), Some(4));
        assert_eq!(items.item(1), Some(7));
        assert_eq!(items.key(0, "to"), Some(5));
        assert_eq!(items.key(1, "allowed_users"), Some(9));
        assert_eq!(items.key(1, "regex"), Some(7));
        assert_eq!(ItemLines::find(text, Some("policy"), 3).item(0), None);
        // Keys of nested maps are not the route's own.
        let nested = "- from: https://a\n  set_request_headers:\n    to: x\n  to: http://b\n-\n  from: https://c\n  to: http://d\n";
        let items = ItemLines::find(nested, None, 2);
        assert_eq!(items.key(0, "to"), Some(4));
        assert_eq!(items.key(1, "to"), Some(7));
        assert_eq!(items.key(1, "from"), Some(6));
    }

    #[test]
    fn unindented_lists_and_top_level_lists() {
        let text = "routes:\n- from: https://a.example\n  to: http://a\n- from: https://b.example\n  to: http://b\ncookie_name: x\n";
        let items = ItemLines::find(text, Some("routes"), 2);
        assert_eq!(items.key(1, "to"), Some(5));
        let policy = "---\n- to: http://a\n  from: https://a.example\n- from: https://b.example\n";
        let items = ItemLines::find(policy, None, 2);
        assert_eq!(items.key(0, "from"), Some(3));
        assert_eq!(items.item(1), Some(4));
    }
}
