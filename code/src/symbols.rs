//! Symbols from syntax trees: functions, methods, classes, structs, enums, traits,
//! interfaces, impls, modules, constants and type aliases, with their spans, the
//! name of what contains them, and their docs.
//!
//! One walk serves every language: [`classify`] says whether a node is a symbol
//! (and where its name and members are); anything else is looked through, except
//! function bodies. The walk's depth is capped, so pathological nesting cannot
//! exhaust the stack.

use serde::Serialize;
use tree_sitter::{Node, Tree};

use crate::lang::Language;
use crate::parse::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolKind {
    Module,
    Class,
    Struct,
    Enum,
    Interface,
    Trait,
    Impl,
    Function,
    Method,
    Constant,
    TypeAlias,
    Field,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    /// The whole item, docs and decorators excluded.
    pub span: Span,
    /// Just the name.
    pub name_span: Span,
    /// The enclosing class, impl, trait or module.
    pub container: Option<String>,
    pub doc: Option<String>,
    pub children: Vec<Symbol>,
}

/// How deep the walk looks through non-symbol nodes.
const MAX_DEPTH: usize = 48;

struct Found<'t> {
    kind: SymbolKind,
    name: Node<'t>,
    /// Where members live (classes, impls, traits, modules).
    members: Option<Node<'t>>,
}

fn text<'a>(node: Node<'_>, src: &'a str) -> &'a str {
    src.get(node.byte_range()).unwrap_or("")
}

fn classify<'t>(lang: Language, node: Node<'t>, in_type: bool) -> Option<Found<'t>> {
    let field = |f: &str| node.child_by_field_name(f);
    let func = if in_type {
        SymbolKind::Method
    } else {
        SymbolKind::Function
    };
    let found = |kind, name: Option<Node<'t>>, members: Option<Node<'t>>| {
        name.map(|name| Found {
            kind,
            name,
            members,
        })
    };
    match lang {
        Language::Rust => match node.kind() {
            "function_item" | "function_signature_item" => found(func, field("name"), None),
            "macro_definition" => found(SymbolKind::Function, field("name"), None),
            "struct_item" | "union_item" => found(SymbolKind::Struct, field("name"), None),
            "enum_item" => found(SymbolKind::Enum, field("name"), None),
            "trait_item" => found(SymbolKind::Trait, field("name"), field("body")),
            "impl_item" => found(SymbolKind::Impl, field("type"), field("body")),
            "mod_item" => found(SymbolKind::Module, field("name"), field("body")),
            "const_item" | "static_item" => found(SymbolKind::Constant, field("name"), None),
            "type_item" => found(SymbolKind::TypeAlias, field("name"), None),
            _ => None,
        },
        Language::Python => match node.kind() {
            "function_definition" => found(func, field("name"), None),
            "class_definition" => found(SymbolKind::Class, field("name"), field("body")),
            _ => None,
        },
        Language::TypeScript | Language::Tsx | Language::JavaScript => match node.kind() {
            "function_declaration" | "generator_function_declaration" | "function_signature" => {
                found(SymbolKind::Function, field("name"), None)
            }
            "class_declaration" | "abstract_class_declaration" | "class" => {
                found(SymbolKind::Class, field("name"), field("body"))
            }
            "method_definition" | "method_signature" | "abstract_method_signature" => {
                found(SymbolKind::Method, field("name"), None)
            }
            "interface_declaration" => found(SymbolKind::Interface, field("name"), field("body")),
            "type_alias_declaration" => found(SymbolKind::TypeAlias, field("name"), None),
            "enum_declaration" => found(SymbolKind::Enum, field("name"), None),
            "internal_module" | "module" => found(SymbolKind::Module, field("name"), field("body")),
            "variable_declarator" => {
                let value = field("value")?;
                let is_fn = matches!(
                    value.kind(),
                    "arrow_function" | "function_expression" | "function" | "generator_function"
                );
                let name = field("name").filter(|n| n.kind() == "identifier");
                if is_fn {
                    found(SymbolKind::Function, name, None)
                } else if value.kind() == "class" {
                    found(SymbolKind::Class, name, value.child_by_field_name("body"))
                } else {
                    None
                }
            }
            _ => None,
        },
        Language::Go => match node.kind() {
            "function_declaration" => found(SymbolKind::Function, field("name"), None),
            "method_declaration" => found(SymbolKind::Method, field("name"), None),
            "type_spec" => {
                let kind = match field("type").map(|t| t.kind()) {
                    Some("struct_type") => SymbolKind::Struct,
                    Some("interface_type") => SymbolKind::Interface,
                    _ => SymbolKind::TypeAlias,
                };
                found(kind, field("name"), None)
            }
            "const_spec" => found(SymbolKind::Constant, field("name"), None),
            _ => None,
        },
    }
}

/// Comment lines (or a Python docstring) documenting `node`.
fn doc_of(lang: Language, node: Node<'_>, src: &str) -> Option<String> {
    if lang == Language::Python {
        let body = node.child_by_field_name("body")?;
        let first = body.named_child(0)?;
        if first.kind() != "expression_statement" {
            return None;
        }
        let s = first.named_child(0)?;
        if s.kind() != "string" {
            return None;
        }
        let t = text(s, src)
            .trim_start_matches(['r', 'b', 'u', 'R', 'B', 'U'])
            .trim_matches(|c| c == '"' || c == '\'')
            .trim();
        return (!t.is_empty()).then(|| t.to_string());
    }
    let mut lines: Vec<&str> = Vec::new();
    let mut cur = node;
    let mut expected_row = node.start_position().row;
    while let Some(prev) = cur.prev_sibling() {
        let kind = prev.kind();
        let is_comment = kind.contains("comment");
        let is_attr = matches!(kind, "attribute_item" | "decorator");
        if !(is_comment || is_attr) || prev.end_position().row + 1 < expected_row {
            break;
        }
        if is_comment {
            lines.push(text(prev, src));
        }
        expected_row = prev.start_position().row;
        cur = prev;
    }
    if lines.is_empty() {
        return None;
    }
    lines.reverse();
    let doc: Vec<String> = lines
        .iter()
        .flat_map(|l| l.lines())
        .map(|l| {
            l.trim()
                .trim_start_matches("/**")
                .trim_start_matches("/*")
                .trim_end_matches("*/")
                .trim_start_matches("//!")
                .trim_start_matches("///")
                .trim_start_matches("//")
                .trim_start_matches('*')
                .trim()
                .to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    (!doc.is_empty()).then(|| doc.join("\n"))
}

/// The receiver type of a Go method: `func (s *Server) Run()` → `Server`.
fn go_receiver(node: Node<'_>, src: &str) -> Option<String> {
    let recv = node.child_by_field_name("receiver")?;
    let t = text(recv, src);
    let ty = t
        .trim_matches(|c| c == '(' || c == ')')
        .split_whitespace()
        .last()?
        .trim_start_matches('*');
    let ty = ty.split('[').next().unwrap_or(ty);
    (!ty.is_empty()).then(|| ty.to_string())
}

fn walk(
    lang: Language,
    node: Node<'_>,
    src: &str,
    container: Option<&str>,
    in_type: bool,
    depth: usize,
    out: &mut Vec<Symbol>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut cursor = node.walk();
    for child in node.named_children(&mut cursor) {
        let Some(found) = classify(lang, child, in_type) else {
            // Look through wrappers (exports, decorators, declaration lists, blocks),
            // but not into function bodies.
            if !child.kind().contains("function") && child.kind() != "arrow_function" {
                walk(lang, child, src, container, in_type, depth + 1, out);
            }
            continue;
        };
        let name = text(found.name, src).to_string();
        // A decorated Python definition is documented and spanned by its wrapper.
        let outer = match child.parent() {
            Some(p) if p.kind() == "decorated_definition" => p,
            _ => child,
        };
        // JS/TS `const f = () => …`: the whole declaration is the item.
        let item = if child.kind() == "variable_declarator" {
            child.parent().unwrap_or(child)
        } else {
            outer
        };
        let doc_node = match item.parent() {
            Some(p) if p.kind() == "export_statement" => p,
            _ => item,
        };
        // Go documents `type X struct` and `const X` on the enclosing declaration.
        let doc_node = match (lang, child.kind(), child.parent()) {
            (Language::Go, "type_spec" | "const_spec", Some(p))
                if child.prev_named_sibling().is_none() =>
            {
                p
            }
            _ => doc_node,
        };
        let doc = doc_of(
            lang,
            if lang == Language::Python {
                child
            } else {
                doc_node
            },
            src,
        );
        let container_name = match (lang, child.kind()) {
            (Language::Go, "method_declaration") => go_receiver(child, src),
            _ => container.map(str::to_string),
        };
        let mut children = Vec::new();
        if let Some(members) = found.members {
            let is_type = !matches!(found.kind, SymbolKind::Module);
            walk(
                lang,
                members,
                src,
                Some(&name),
                is_type,
                depth + 1,
                &mut children,
            );
        }
        out.push(Symbol {
            name,
            kind: found.kind,
            span: Span::of(item),
            name_span: Span::of(found.name),
            container: container_name,
            doc,
            children,
        });
    }
}

pub(crate) fn extract(lang: Language, tree: &Tree, src: &str) -> Vec<Symbol> {
    let mut out = Vec::new();
    walk(lang, tree.root_node(), src, None, false, 0, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Limits, ParsedFile};

    /// (name, kind, container, first line 1-based, doc).
    type Row = (String, SymbolKind, Option<String>, usize, Option<String>);

    /// A row for every symbol, depth first.
    fn check(lang: Language, src: &str) -> Vec<Row> {
        fn flat(s: &[Symbol], out: &mut Vec<Row>) {
            for x in s {
                out.push((
                    x.name.clone(),
                    x.kind,
                    x.container.clone(),
                    x.span.start.row + 1,
                    x.doc.clone(),
                ));
                flat(&x.children, out);
            }
        }
        let p = ParsedFile::parse(lang, src, &Limits::default());
        let mut out = Vec::new();
        flat(&p.symbols(src), &mut out);
        out
    }

    fn names(v: &[Row]) -> Vec<&str> {
        v.iter().map(|x| x.0.as_str()).collect()
    }

    #[test]
    fn rust_items() {
        let src = "/// Adds.\n#[inline]\npub fn add(a: i32) -> i32 { fn inner() {} a }\nstruct P { x: f64 }\nenum E { A }\ntrait T { fn t(&self); }\nimpl std::fmt::Display for P {\n    fn fmt(&self) {}\n}\nmod m { const C: u8 = 1; }\ntype Alias = u8;\nmacro_rules! mac { () => {} }\n";
        let s = check(Language::Rust, src);
        assert_eq!(
            names(&s),
            ["add", "P", "E", "T", "t", "P", "fmt", "m", "C", "Alias", "mac"]
        );
        assert_eq!(s[0].1, SymbolKind::Function);
        assert_eq!(s[0].4.as_deref(), Some("Adds."));
        assert_eq!(s[0].3, 3);
        assert_eq!((s[5].1, s[6].1), (SymbolKind::Impl, SymbolKind::Method));
        assert_eq!(s[6].2.as_deref(), Some("P"));
        assert_eq!(
            (s[8].1, s[8].2.as_deref()),
            (SymbolKind::Constant, Some("m"))
        );
    }

    #[test]
    fn python_items() {
        let src = "import os\nMAX = 3\n\n@decorator\ndef top(x):\n    \"\"\"Top doc.\"\"\"\n    def nested(): pass\n\nclass C(Base):\n    '''A class.'''\n    async def m(self):\n        pass\n    @property\n    def p(self): return 1\n\nif __name__ == '__main__':\n    def guarded(): pass\n";
        let s = check(Language::Python, src);
        assert_eq!(names(&s), ["top", "C", "m", "p", "guarded"]);
        assert_eq!((s[0].3, s[0].4.as_deref()), (4, Some("Top doc.")));
        assert_eq!(
            (s[1].1, s[1].4.as_deref()),
            (SymbolKind::Class, Some("A class."))
        );
        assert_eq!((s[2].1, s[2].2.as_deref()), (SymbolKind::Method, Some("C")));
    }

    #[test]
    fn typescript_and_javascript_items() {
        let src = "/** Greets. */\nexport function greet(n: string) {}\nexport class Shop {\n  buy(x: number) {}\n}\ninterface I { f(): void }\ntype T = string;\nenum Color { Red }\nconst handler = async () => 1;\nnamespace NS { export function inner() {} }\nlet notFn = 3;\n";
        let s = check(Language::TypeScript, src);
        assert_eq!(
            names(&s),
            ["greet", "Shop", "buy", "I", "f", "T", "Color", "handler", "NS", "inner"]
        );
        assert_eq!(s[0].4.as_deref(), Some("Greets."));
        assert_eq!(
            (s[2].1, s[2].2.as_deref()),
            (SymbolKind::Method, Some("Shop"))
        );
        assert_eq!(s[7].1, SymbolKind::Function);
        let tsx = check(Language::Tsx, "export const App = () => <div/>;\n");
        assert_eq!(names(&tsx), ["App"]);
        let js = check(Language::JavaScript, "function a() {}\nclass B { c() {} }\nmodule.exports = { a };\nconst d = function() {};\n");
        assert_eq!(names(&js), ["a", "B", "c", "d"]);
    }

    #[test]
    fn go_items() {
        let src = "package main\n\n// Server serves.\ntype Server struct{}\ntype Handler interface{ Serve() }\n// Run runs.\nfunc (s *Server) Run() {}\nfunc main() {}\nconst Limit = 3\n";
        let s = check(Language::Go, src);
        assert_eq!(names(&s), ["Server", "Handler", "Run", "main", "Limit"]);
        assert_eq!(
            (s[0].1, s[0].4.as_deref()),
            (SymbolKind::Struct, Some("Server serves."))
        );
        assert_eq!(s[1].1, SymbolKind::Interface);
        assert_eq!(
            (s[2].1, s[2].2.as_deref(), s[2].4.as_deref()),
            (SymbolKind::Method, Some("Server"), Some("Run runs."))
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let src = format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
        let _ = check(Language::Python, &src);
        let src = "def f():\n".to_string() + &"    if x:\n".repeat(3000);
        let _ = check(Language::Python, &src);
    }
}
