//! Search terms: identifiers split on case changes, digits and underscores,
//! lowercased, with the whole identifier kept too.

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "if",
    "in", "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was", "when",
    "where", "which", "while", "with", "not", "no", "self", "fn", "def", "let", "const", "var",
    "pub", "return", "import", "func", "function", "class", "struct", "impl", "use", "mut", "new",
    "none", "null", "true", "false", "else", "elif", "then", "do", "does", "should",
];

fn push(out: &mut Vec<String>, t: &str) {
    if t.chars().count() >= 2 && t.len() <= 64 && !STOPWORDS.contains(&t) {
        out.push(t.to_string());
    }
}

/// Splits one identifier into parts: `parseHTTPRequest_v2` → parse, http, request, v2.
fn split_identifier(word: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = word.chars().collect();
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    for i in 0..chars.len() {
        let c = chars[i];
        if c == '_' || c == '-' {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase() && c.is_uppercase() && next_lower);
            if boundary {
                parts.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    let whole = word.to_lowercase();
    for p in &parts {
        push(out, &p.to_lowercase());
    }
    if parts.len() > 1 {
        push(out, &whole);
    }
}

/// The search terms of a text (code, comments or an issue), in order.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if word.is_empty() || word.len() > 128 {
            continue;
        }
        split_identifier(word, &mut out);
    }
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
