//! Tabs where Python accepts them: starlark-rust's lexer refuses every tab
//! outside a string, but BUILD files written for Pants (Python) put tabs
//! inside brackets and between tokens. Before parsing, the loader turns
//! each such tab into one space, so every byte keeps its offset and errors
//! still name the right line and column. A tab that indents a line at the
//! top level is left alone: Starlark's "tabs are not allowed" error stays
//! the answer there.

/// `text` with every tab inside brackets, or after the first token of a
/// top-level line, made a space. Tabs inside string literals and comments
/// are kept.
pub(crate) fn soften_tabs(text: String) -> String {
    if !text.contains('\t') {
        return text;
    }
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut depth: usize = 0;
    // Whether the current line has had something other than spaces and tabs.
    let mut line_started = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line_started = false;
                i += 1;
            }
            b'\t' => {
                if depth > 0 || line_started {
                    out[i] = b' ';
                }
                i += 1;
            }
            b' ' | b'\r' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            quote @ (b'"' | b'\'') => {
                line_started = true;
                i = skip_string(bytes, i, quote);
            }
            other => {
                line_started = true;
                match other {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                i += 1;
            }
        }
    }
    // Only ASCII tabs became ASCII spaces: still UTF-8.
    String::from_utf8(out).expect("replacing ASCII bytes keeps UTF-8 valid")
}

/// The index just after the string literal opening at `start` (a `quote`;
/// any `r`/`b`/`f` prefix was passed over as an identifier character, and
/// a backslash escapes the next byte whatever the prefix, which is where a
/// raw string ends too).
fn skip_string(bytes: &[u8], start: usize, quote: u8) -> usize {
    let triple = bytes.len() >= start + 3 && bytes[start + 1] == quote && bytes[start + 2] == quote;
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' if !triple => return i,
            byte if byte == quote => {
                if !triple {
                    return i + 1;
                }
                if bytes.len() >= i + 3 && bytes[i + 1] == quote && bytes[i + 2] == quote {
                    return i + 3;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_inside_brackets_and_between_tokens_become_spaces() {
        let text = "x = [\n\t\"a\",\n\t\"b\",\n]\ny =\t1\n".to_owned();
        assert_eq!(soften_tabs(text), "x = [\n \"a\",\n \"b\",\n]\ny = 1\n");
    }

    #[test]
    fn tabs_in_strings_comments_and_top_level_indentation_stay() {
        for text in ["s = \"a\\tb\t\"\n", "# a\tcomment\n", "def f():\n\treturn 1\n", "s = '''\n\t(\n'''\n"] {
            assert_eq!(soften_tabs(text.to_owned()), text, "{text:?}");
        }
    }

    #[test]
    fn offsets_do_not_move() {
        let text = "a = f(\n\t1,\t2)\n";
        let softened = soften_tabs(text.to_owned());
        assert_eq!(softened.len(), text.len());
        assert_eq!(softened.find('2'), text.find('2'));
    }
}
