//! Secrets inside URLs, hidden before a URL is shown (`bazaar config`, logs, error messages).

/// Query parameters that carry a secret in the URLs Bazaar is given (database drivers take
/// `?password=`, `?sslpassword=`; a JWKS endpoint behind a gateway may take `?token=`).
const SECRET_PARAMS: &[&str] = &["password", "pass", "pwd", "secret", "token", "key", "apikey", "api_key", "auth"];

fn is_secret(param: &str) -> bool {
    let param = param.to_ascii_lowercase();
    SECRET_PARAMS.contains(&param.as_str())
        || param.ends_with("password")
        || param.ends_with("_secret")
        || param.ends_with("_token")
}

/// `postgres://user:secret@host/db?sslpassword=x` → `postgres://user:***@host/db?sslpassword=***`;
/// something that is not a URL becomes `***` (it may be a secret pasted in the wrong place).
pub fn url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else { return "***".to_owned() };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query_pairs().any(|(k, _)| is_secret(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret(&k) { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `{module}` in a URL template stays readable.
    url.to_string().replace("%7Bmodule%7D", "{module}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_the_authority_and_the_query_are_hidden() {
        assert_eq!(url("postgres://bazaar:hunter2@db/{module}"), "postgres://bazaar:***@db/{module}");
        let shown = url("postgres://db/shop?user=bazaar&password=hunter2&sslmode=require&sslpassword=x");
        assert!(!shown.contains("hunter2") && !shown.contains("=x"), "{shown}");
        assert!(shown.contains("user=bazaar") && shown.contains("sslmode=require"), "{shown}");
        assert_eq!(
            url("https://users:8080/.well-known/jwks.json?token=abc"),
            "https://users:8080/.well-known/jwks.json?token=***"
        );
        assert_eq!(url("sqlite://data/{module}.db?mode=rwc"), "sqlite://data/{module}.db?mode=rwc");
        assert_eq!(url("not a url with a hunter2"), "***");
    }
}
