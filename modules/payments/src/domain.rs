//! The payments module's domain: values that parse, never validated twice. No actix, no sea-orm.

use chrono::{DateTime, Utc};

kernel::uuid_id!(
    /// A note's id.
    NoteId
);

/// A note's text: 1 to `max` characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteText(String);

impl NoteText {
    pub fn parse(raw: &str, max: usize) -> Result<Self, String> {
        let text = raw.trim();
        if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
            return Err(format!("must be 1 to {max} characters"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct Note {
    pub id: NoteId,
    pub text: NoteText,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_trimmed_and_bounded() {
        assert_eq!(NoteText::parse("  hi ", 5).expect("valid").as_str(), "hi");
        assert!(NoteText::parse("   ", 5).is_err());
        assert!(NoteText::parse("toolong", 5).is_err());
    }
}
