//! The command line: parses flags into requests and renders results.

pub fn main() -> i32 {
    eprintln!("berth: no subcommands yet");
    2
}
