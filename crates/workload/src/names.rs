//! The rule for names people give: an event's and a batch's. One length
//! limit for both, so a name fits a form, a chart label and a verdict line.
//! Each check returns a phrase to follow the field's name in whatever
//! words the caller uses (`--name …` on the command line, `Name …` in the
//! console, `name: …` in an event's problems).

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 80;

/// Why `name` cannot name an event, or `None` when it can.
pub fn name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some("must not be empty".into());
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Some(format!(
            "must be at most {MAX_NAME_CHARS} characters, not {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Some("must not contain line breaks or other control characters".into());
    }
    None
}

/// Why `name` cannot name a batch, or `None` when it can: as for an event,
/// and no brackets, which frame it in the verdict line (`SUCCESS [name]`).
pub fn batch_name_problem(name: &str) -> Option<String> {
    name_problem(name).or_else(|| {
        name.contains(['[', ']'])
            .then(|| "must not contain [ or ] (the verdict line frames it in brackets)".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_single_lines() {
        assert_eq!(name_problem("Spring League"), None);
        assert_eq!(name_problem(&"é".repeat(MAX_NAME_CHARS)), None);
        assert_eq!(
            name_problem(&"x".repeat(MAX_NAME_CHARS + 1)).as_deref(),
            Some("must be at most 80 characters, not 81")
        );
        assert!(name_problem("  ").is_some());
        assert!(name_problem("a\nb").is_some());
        assert_eq!(name_problem("a [b]"), None);
        assert!(batch_name_problem("a [b]").is_some());
        assert_eq!(batch_name_problem("spring-greedy-1"), None);
    }
}
