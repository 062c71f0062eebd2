//! Analysis: turns targets into providers (`ImageInfo`, `LayerInfo`, ...) and registers actions.
