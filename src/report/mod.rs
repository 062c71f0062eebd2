//! Reporting: draws engine events on the console (the only module besides `cli` that prints).
