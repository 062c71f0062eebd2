//! Dockerfiles as berth reads them: the parser (directives, continuations,
//! heredocs, exec and shell forms) and the word lexer (quotes and
//! `${VAR:-default}` substitution). Plain Rust with no knowledge of
//! targets or actions; `analysis/rules/dockerfile.rs` turns the
//! instructions into actions.

pub mod lex;
pub mod parse;

pub use parse::{parse, Args, Dockerfile, Heredoc, Instruction};
