//! Loading: evaluates `BUILD.star` and `.star` files with starlark-rust and records targets.
