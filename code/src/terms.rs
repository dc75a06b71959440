//! Search terms: identifiers split on case changes, digits and underscores,
//! lowercased, with the whole identifier kept too. Short words and a few English
//! and keyword stopwords are dropped.

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "if",
    "in", "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "when",
    "where", "which", "while", "with", "not", "no", "self", "fn", "def", "let", "const", "var",
    "pub", "return", "import", "func", "function", "class", "struct", "impl", "use", "mut", "new",
    "none", "null", "true", "false", "else", "elif", "then", "do", "does", "should",
];

fn keep(t: &str) -> bool {
    t.len() <= 64 && t.chars().nth(1).is_some() && !STOPWORDS.contains(&t)
}

/// Calls `f` with each part of one identifier, lowercased:
/// `parseHTTPRequest_v2` → parse, http, request, v2, then the whole identifier.
fn split_identifier(word: &str, buf: &mut String, f: &mut dyn FnMut(&str)) {
    let mut parts = 0;
    let mut start: Option<usize> = None;
    let mut prev: Option<char> = None;
    let mut emit = |from: usize, to: usize, buf: &mut String, parts: &mut usize| {
        buf.clear();
        buf.extend(word[from..to].chars().flat_map(char::to_lowercase));
        if keep(buf) {
            f(buf);
        }
        *parts += 1;
    };
    let mut iter = word.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == '_' || c == '-' {
            if let Some(s) = start.take() {
                emit(s, i, buf, &mut parts);
            }
            prev = Some(c);
            continue;
        }
        if let (Some(s), Some(p)) = (start, prev) {
            let next_lower = iter.peek().is_some_and(|(_, n)| n.is_lowercase());
            let boundary = (p.is_lowercase() && c.is_uppercase())
                || (p.is_uppercase() && c.is_uppercase() && next_lower);
            if boundary {
                emit(s, i, buf, &mut parts);
                start = Some(i);
            }
        }
        if start.is_none() {
            start = Some(i);
        }
        prev = Some(c);
    }
    if let Some(s) = start {
        emit(s, word.len(), buf, &mut parts);
    }
    if parts > 1 {
        buf.clear();
        buf.extend(word.chars().flat_map(char::to_lowercase));
        if keep(buf) {
            f(buf);
        }
    }
}

/// Calls `f` with every search term of a text (code, comments or an issue), in
/// order, without allocating per term.
pub fn for_each_term(text: &str, f: &mut dyn FnMut(&str)) {
    let mut buf = String::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if word.is_empty() || word.len() > 128 {
            continue;
        }
        split_identifier(word, &mut buf, f);
    }
}

/// The search terms of a text, in order.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_term(text, &mut |t| out.push(t.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_split_on_case_and_underscores() {
        assert_eq!(
            terms("parseHTTPRequest_v2"),
            ["parse", "http", "request", "v2", "parsehttprequest_v2"]
        );
        assert_eq!(
            terms("apply_discount(price)"),
            ["apply", "discount", "apply_discount", "price"]
        );
        assert_eq!(terms("The price is negative!"), ["price", "negative"]);
        assert_eq!(terms("XMLParser"), ["xml", "parser", "xmlparser"]);
        assert!(terms("a b c = 1").is_empty());
        assert_eq!(
            terms("größe_berechnen"),
            ["größe", "berechnen", "größe_berechnen"]
        );
    }
}
