//! HTTP caching of public reads: each answer carries an `ETag` and a `Cache-Control`, and a client
//! (or a cache in front of the shop) that sends back the ETag it holds in `If-None-Match` gets a
//! bodiless `304 Not Modified` instead of the representation again.

use actix_web::http::header::{CacheControl, CacheDirective, ETag, EntityTag, Header, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How long shared caches and browsers may keep a public read without asking again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub max_age_secs: u64,
}

impl Freshness {
    /// `public, no-cache` at 0 (kept, but revalidated with `If-None-Match` every time: never
    /// stale), else `public, max-age=N` (up to N seconds stale).
    fn cache_control(self) -> CacheControl {
        match self.max_age_secs {
            0 => CacheControl(vec![CacheDirective::Public, CacheDirective::NoCache]),
            n => {
                CacheControl(vec![CacheDirective::Public, CacheDirective::MaxAge(u32::try_from(n).unwrap_or(u32::MAX))])
            }
        }
    }
}

/// The strong ETag of a versioned resource: its version in quotes (`"3"`), as the basket's.
pub fn version_tag(version: u64) -> EntityTag {
    EntityTag::new_strong(version.to_string())
}

/// A weak ETag of a JSON body, for representations made of many resources (a list page): the
/// first 16 bytes of its SHA-256, in hex.
pub fn body_tag<T: Serialize>(body: &T) -> EntityTag {
    let digest = Sha256::digest(serde_json::to_vec(body).unwrap_or_default());
    EntityTag::new_weak(digest[..16].iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether the request's `If-None-Match` names `tag` (weak comparison, RFC 9110 §13.1.2) or is `*`.
fn holds(req: &HttpRequest, tag: &EntityTag) -> bool {
    match IfNoneMatch::parse(req) {
        Ok(IfNoneMatch::Any) => true,
        Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|held| held.weak_eq(tag)),
        Err(_) => false,
    }
}

/// 200 with `body` as JSON, or 304 when the client holds `tag`; both with `ETag` and
/// `Cache-Control`.
pub fn json<T: Serialize>(req: &HttpRequest, tag: EntityTag, freshness: Freshness, body: &T) -> HttpResponse {
    let held = holds(req, &tag);
    let mut response = if held { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response.insert_header(ETag(tag)).insert_header(freshness.cache_control());
    if held { response.finish() } else { response.json(body) }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header;
    use actix_web::test::TestRequest;

    use super::*;

    fn value(response: &HttpResponse, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    #[test]
    fn an_etag_held_by_the_client_answers_304_without_a_body() {
        let tag = version_tag(3);
        let fresh = Freshness { max_age_secs: 0 };
        let asked =
            |value: &str| TestRequest::default().insert_header((header::IF_NONE_MATCH, value)).to_http_request();
        for held in ["\"3\"", "W/\"3\"", "\"1\", \"3\"", "*"] {
            let response = json(&asked(held), tag.clone(), fresh, &"body");
            assert_eq!(response.status(), 304, "{held}");
            assert_eq!(value(&response, header::ETAG), "\"3\"");
            assert_eq!(value(&response, header::CACHE_CONTROL), "public, no-cache");
        }
        for other in ["\"2\"", "garbage"] {
            assert_eq!(json(&asked(other), tag.clone(), fresh, &"body").status(), 200, "{other}");
        }
        let plain = json(&TestRequest::default().to_http_request(), tag, Freshness { max_age_secs: 30 }, &"body");
        assert_eq!((plain.status().as_u16(), value(&plain, header::CACHE_CONTROL)), (200, "public, max-age=30"));
    }

    #[test]
    fn a_body_tag_is_weak_and_changes_with_the_body() {
        let (a, b) = (body_tag(&[1, 2]), body_tag(&[1, 3]));
        assert!(a.weak && a.tag().len() == 32 && a.weak_ne(&b));
        assert!(a.weak_eq(&body_tag(&[1, 2])));
    }
}
