//! `berth query`: expressions over the target graph and their three output
//! formats.
//!
//! ```text
//! expr := PATTERN | deps(expr) | rdeps(expr, expr) | attr(NAME, VALUE, expr)
//! ```
//!
//! Patterns here include targets tagged `manual`, as Bazel's query does;
//! only `build` leaves them out of wildcards.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::graph::{GraphError, TargetGraph};
use crate::workspace::{Label, Pattern};

/// A parsed query expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryExpr {
    /// `//...`, `//pkg/...`, `//pkg:all`, `//pkg:name` (a target or a source file).
    Pattern(Pattern),
    /// `deps(E)`: `E` and everything it depends on, transitively.
    Deps(Box<QueryExpr>),
    /// `rdeps(U, E)`: the members of `deps(U)` that depend on `E`, transitively, and `E` itself.
    Rdeps(Box<QueryExpr>, Box<QueryExpr>),
    /// `attr(NAME, VALUE, E)`: the targets of `E` whose common attribute
    /// `NAME` matches `VALUE`: `tags` holding it, `description` containing it.
    Attr(CommonAttr, String, Box<QueryExpr>),
}

/// The attributes `attr(...)` filters on: those every rule has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommonAttr {
    Tags,
    Description,
}

/// How `berth query` prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOutput {
    /// One label per line, sorted.
    Label,
    /// A JSON array of `{label, kind, deps, location}`, sorted by label,
    /// with `tags` and `description` where the target sets them.
    Json,
    /// A Graphviz digraph of the result and the edges between its members.
    Dot,
}

impl QueryExpr {
    /// Parses an expression whose patterns are absolute (`//...`).
    pub fn parse(text: &str) -> Result<QueryExpr, GraphError> {
        QueryExpr::parse_in(text, "")
    }

    /// Parses an expression typed in the directory of `package`: relative
    /// patterns (`:img`, `...`) are resolved against it.
    pub fn parse_in(text: &str, package: &str) -> Result<QueryExpr, GraphError> {
        let tokens = tokenize(text);
        let mut parser = Parser { text, package, tokens: &tokens, position: 0 };
        let expr = parser.expr()?;
        if let Some(token) = parser.tokens.get(parser.position) {
            return Err(parser.error(format!("unexpected `{token}` after the expression")));
        }
        Ok(expr)
    }

    /// Every pattern the expression mentions: the packages to load.
    pub fn patterns(&self) -> Vec<Pattern> {
        match self {
            QueryExpr::Pattern(pattern) => vec![pattern.clone()],
            QueryExpr::Deps(inner) => inner.patterns(),
            QueryExpr::Rdeps(universe, inner) => [universe.patterns(), inner.patterns()].concat(),
            QueryExpr::Attr(_, _, inner) => inner.patterns(),
        }
    }

    /// The labels the expression denotes in `graph`.
    pub fn evaluate(&self, graph: &TargetGraph) -> Result<BTreeSet<Label>, GraphError> {
        match self {
            QueryExpr::Pattern(Pattern::Target(label)) if graph.source_file(label).is_some() => {
                Ok(BTreeSet::from([label.clone()]))
            }
            QueryExpr::Pattern(pattern) => {
                Ok(graph.resolve_patterns_with_manual(std::slice::from_ref(pattern))?.into_iter().collect())
            }
            QueryExpr::Deps(inner) => Ok(graph.transitive_deps(&inner.evaluate(graph)?)),
            QueryExpr::Rdeps(universe, inner) => {
                let universe = graph.transitive_deps(&universe.evaluate(graph)?);
                Ok(graph.reverse_deps(&universe, &inner.evaluate(graph)?))
            }
            QueryExpr::Attr(attr, value, inner) => {
                let mut labels = inner.evaluate(graph)?;
                labels.retain(|label| {
                    graph.target(label).is_some_and(|target| match attr {
                        CommonAttr::Tags => target.common.tags.iter().any(|tag| tag == value),
                        CommonAttr::Description => {
                            target.common.description.as_deref().is_some_and(|text| text.contains(value.as_str()))
                        }
                    })
                });
                Ok(labels)
            }
        }
    }
}

fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '(' | ')' | ',') {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

struct Parser<'a> {
    text: &'a str,
    package: &'a str,
    tokens: &'a [String],
    position: usize,
}

impl Parser<'_> {
    fn error(&self, reason: String) -> GraphError {
        GraphError::Query { query: self.text.to_owned(), reason }
    }

    fn next(&mut self) -> Option<&str> {
        let token = self.tokens.get(self.position)?;
        self.position += 1;
        Some(token)
    }

    fn expect(&mut self, wanted: &str) -> Result<(), GraphError> {
        match self.next() {
            Some(token) if token == wanted => Ok(()),
            Some(token) => {
                let token = token.to_owned();
                Err(self.error(format!("expected `{wanted}`, found `{token}`")))
            }
            None => Err(self.error(format!("expected `{wanted}` at the end"))),
        }
    }

    fn expr(&mut self) -> Result<QueryExpr, GraphError> {
        let Some(token) = self.next().map(str::to_owned) else {
            return Err(self.error("the expression is empty".to_owned()));
        };
        if self.tokens.get(self.position).map(String::as_str) == Some("(") {
            self.position += 1;
            let expr = match token.as_str() {
                "deps" => QueryExpr::Deps(Box::new(self.expr()?)),
                "rdeps" => {
                    let universe = self.expr()?;
                    self.expect(",")?;
                    QueryExpr::Rdeps(Box::new(universe), Box::new(self.expr()?))
                }
                "attr" => {
                    let attr = match self.next() {
                        Some("tags") => CommonAttr::Tags,
                        Some("description") => CommonAttr::Description,
                        Some(other) => {
                            let other = other.to_owned();
                            return Err(self.error(format!(
                                "`attr` filters on `tags` or `description`, the attributes every rule has, not `{other}`"
                            )));
                        }
                        None => return Err(self.error("expected an attribute name at the end".to_owned())),
                    };
                    self.expect(",")?;
                    let value = match self.next() {
                        Some(token) if !matches!(token, "(" | ")" | ",") => token.trim_matches('"').to_owned(),
                        _ => return Err(self.error("`attr` needs a value to match".to_owned())),
                    };
                    self.expect(",")?;
                    QueryExpr::Attr(attr, value, Box::new(self.expr()?))
                }
                other => {
                    return Err(
                        self.error(format!("unknown function `{other}`; berth knows `deps`, `rdeps` and `attr`"))
                    )
                }
            };
            self.expect(")")?;
            return Ok(expr);
        }
        if matches!(token.as_str(), "(" | ")" | ",") {
            return Err(self.error(format!("unexpected `{token}`")));
        }
        Pattern::parse_in(&token, self.package).map(QueryExpr::Pattern).map_err(|error| self.error(error.to_string()))
    }
}

/// Renders a query result: `labels` must all be in `graph`.
pub fn render_query(graph: &TargetGraph, labels: &BTreeSet<Label>, output: QueryOutput) -> String {
    match output {
        QueryOutput::Label => labels.iter().map(|label| format!("{label}\n")).collect(),
        QueryOutput::Json => {
            /// One result, its fields in the documented order.
            #[derive(serde::Serialize)]
            struct Item<'a> {
                label: String,
                kind: &'a str,
                deps: Vec<String>,
                location: Option<&'a crate::workspace::Location>,
                #[serde(skip_serializing_if = "<[String]>::is_empty")]
                tags: &'a [String],
                #[serde(skip_serializing_if = "Option::is_none")]
                description: Option<&'a str>,
            }
            let items: Vec<Item> = labels
                .iter()
                .filter_map(|label| graph.node(label))
                .map(|node| Item {
                    label: node.label().to_string(),
                    kind: node.kind(),
                    deps: node.deps().iter().map(Label::to_string).collect(),
                    location: node.location(),
                    tags: node.tags(),
                    description: node.description(),
                })
                .collect();
            let mut text = serde_json::to_string_pretty(&items).expect("JSON values always serialize");
            text.push('\n');
            text
        }
        QueryOutput::Dot => {
            let mut text = String::from("digraph berth {\n");
            for label in labels {
                let _ = writeln!(text, "  \"{label}\";");
            }
            for label in labels {
                let Some(node) = graph.node(label) else { continue };
                let mut deps: Vec<&Label> = node.deps().iter().filter(|dep| labels.contains(*dep)).collect();
                deps.sort();
                for dep in deps {
                    let _ = writeln!(text, "  \"{label}\" -> \"{dep}\";");
                }
            }
            text.push_str("}\n");
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> QueryExpr {
        QueryExpr::Pattern(Pattern::parse(text).unwrap())
    }

    #[test]
    fn parses_nested_functions() {
        assert_eq!(QueryExpr::parse("//...").unwrap(), pattern("//..."));
        assert_eq!(QueryExpr::parse(" deps( //app:img ) ").unwrap(), QueryExpr::Deps(Box::new(pattern("//app:img"))));
        let expr = QueryExpr::parse("rdeps(//..., deps(//lib:base))").unwrap();
        assert_eq!(
            expr,
            QueryExpr::Rdeps(Box::new(pattern("//...")), Box::new(QueryExpr::Deps(Box::new(pattern("//lib:base")))))
        );
        assert_eq!(expr.patterns(), [Pattern::parse("//...").unwrap(), Pattern::parse("//lib:base").unwrap()]);
        assert_eq!(
            QueryExpr::parse("attr(tags, manual, //...)").unwrap(),
            QueryExpr::Attr(CommonAttr::Tags, "manual".into(), Box::new(pattern("//...")))
        );
    }

    #[test]
    fn refuses_malformed_queries() {
        for (bad, reason) in [
            ("", "the expression is empty"),
            ("deps(//a:b", "expected `)` at the end"),
            ("rdeps(//...)", "expected `,`, found `)`"),
            ("kind(x, //...)", "unknown function `kind`; berth knows `deps`, `rdeps` and `attr`"),
            (
                "attr(srcs, x, //...)",
                "`attr` filters on `tags` or `description`, the attributes every rule has, not `srcs`",
            ),
            ("attr(tags, , //...)", "`attr` needs a value to match"),
            ("//a:b //c:d", "unexpected `//c:d` after the expression"),
            ("app:", "Invalid target pattern `app:`: the target name is empty"),
        ] {
            match QueryExpr::parse(bad) {
                Err(GraphError::Query { reason: got, .. }) => assert_eq!(got, reason, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
