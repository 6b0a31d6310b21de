//! The users module's domain: e-mail addresses, passwords and names, parsed once at the edge.

use chrono::{DateTime, Utc};
pub use kernel::Role;

kernel::uuid_id!(UserId);

/// An e-mail address, trimmed and lower-cased: the account's unique login.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim().to_lowercase();
        let Some((local, domain)) = email.split_once('@') else {
            return Err("is not an e-mail address".into());
        };
        let valid = !local.is_empty()
            && email.len() <= 254
            && local.len() <= 64
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err("is not an e-mail address".into());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that may be hashed: 12 to 128 characters, not the e-mail, not a common one.
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, String> {
        let chars = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&chars) {
            return Err(format!("must be {} to {} characters", Self::MIN_CHARS, Self::MAX_CHARS));
        }
        let lowered = raw.to_lowercase();
        if email.is_some_and(|e| lowered == e.as_str() || lowered == e.as_str().split('@').next().unwrap_or_default()) {
            return Err("must not be the e-mail address".into());
        }
        if is_common(&lowered) {
            return Err("is one of the most common passwords".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A few hundred of the most used passwords (lower case), shipped with the crate.
pub(crate) const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

fn is_common(lowered: &str) -> bool {
    COMMON_PASSWORDS.lines().map(str::trim).any(|common| common == lowered)
}

/// A display name: 1 to 100 characters once trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err("must be 1 to 100 characters".into());
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: UserName,
    pub role: Role,
    /// When the account proved it receives mail at `email`; admins made by the operator (the CLI,
    /// `users.bootstrap_admin`) are verified when made.
    pub email_verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }
}

/// What a mailed single-use token is for: a token of one purpose is never taken for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPurpose {
    PasswordReset,
    EmailVerification,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password-reset",
            Self::EmailVerification => "email-verification",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "password-reset" => Ok(Self::PasswordReset),
            "email-verification" => Ok(Self::EmailVerification),
            other => Err(format!("'{other}' is no token purpose")),
        }
    }
}

/// A mailed token as stored (its secret is not: only its SHA-256 is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimeToken {
    pub id: uuid::Uuid,
    pub user_id: UserId,
    pub purpose: TokenPurpose,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

/// Where a [`OneTimeToken`] stands at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Usable,
    /// Used once already: whatever its expiry, never again.
    Used,
    Expired,
}

impl OneTimeToken {
    pub fn state(&self, now: DateTime<Utc>) -> TokenState {
        match (self.used_at, self.expires_at) {
            (Some(_), _) => TokenState::Used,
            (None, expires_at) if expires_at <= now => TokenState::Expired,
            (None, _) => TokenState::Usable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(Email::parse("  Ada@Example.COM ").expect("valid").as_str(), "ada@example.com");
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a da@example.com", "ada@.com", "a@b@c.com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_have_bounds_and_are_not_common_or_the_email() {
        let email = Email::parse("ada.lovelace@example.com").expect("valid");
        assert!(Password::parse("correct horse battery", Some(&email)).is_ok());
        assert!(Password::parse("short", None).is_err());
        assert!(Password::parse(&"x".repeat(129), None).is_err());
        assert!(Password::parse("ADA.LOVELACE@example.com", Some(&email)).is_err());
        assert!(Password::parse("ada.lovelace", Some(&email)).is_err());
        assert!(Password::parse("Password1234", None).is_err(), "common, whatever the case");
        assert!(Password::parse("qwertyuiop123", None).is_err());
        assert_eq!(format!("{:?}", Password::parse("correct horse battery", None).expect("valid")), "Password(***)");
    }

    #[test]
    fn a_one_time_token_is_usable_once_and_until_it_expires() {
        let now = chrono::Utc::now();
        let token = OneTimeToken {
            id: uuid::Uuid::now_v7(),
            user_id: UserId::generate(),
            purpose: TokenPurpose::PasswordReset,
            expires_at: now + chrono::Duration::minutes(30),
            used_at: None,
        };
        assert_eq!(token.state(now), TokenState::Usable);
        assert_eq!(token.state(token.expires_at), TokenState::Expired, "the expiry instant is already too late");
        let used = OneTimeToken { used_at: Some(now), ..token.clone() };
        assert_eq!(used.state(now), TokenState::Used);
        assert_eq!(used.state(now + chrono::Duration::days(1)), TokenState::Used, "used stays used once expired");
    }

    #[test]
    fn token_purposes_round_trip_and_nothing_else_parses() {
        for purpose in [TokenPurpose::PasswordReset, TokenPurpose::EmailVerification] {
            assert_eq!(TokenPurpose::parse(purpose.as_str()), Ok(purpose));
        }
        assert!(TokenPurpose::parse("refresh").is_err());
    }

    #[test]
    fn the_common_list_is_a_few_hundred_lower_case_entries() {
        let entries: Vec<&str> = COMMON_PASSWORDS.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(entries.len() >= 200, "{}", entries.len());
        assert!(entries.iter().all(|e| *e == e.to_lowercase()));
    }
}
