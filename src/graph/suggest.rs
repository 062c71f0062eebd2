//! "Did you mean" suggestions for misspelt names (attributes, targets, symbols).

/// The candidate closest to `wanted`, if one is close enough to be a likely
/// misspelling.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(wanted, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        // Highest score; among equals, the first in sorted order.
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(closest("srcz", ["srcs", "prefix"]), Some("srcs"));
        assert_eq!(closest("imgg", ["img", "image", "layer"]), Some("img"));
        assert_eq!(closest("entrypoint", ["srcs", "prefix"]), None);
    }
}
