//! A temp workspace built file by file, and the real `berth` binary run in it (ripgrep's `tests/util.rs`).
