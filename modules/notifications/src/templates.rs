//! The messages' words: minijinja templates, files of this crate (`templates/`) compiled into the
//! binary. Each kind has a text part (`<kind>.txt`, with a `subject` block) and an HTML part
//! (`<kind>.html`, HTML auto-escaped), both extending a layout; they see `shop` (`name`, `url`),
//! `recipient` (`name`, `email`) and the kind's own values.

use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::domain::{Composed, Kind, Recipient};

/// The shop as the messages name it (`[notifications]` `shop_name` and `shop_url`).
#[derive(Debug, Clone, Serialize)]
pub struct Shop {
    pub name: String,
    /// The storefront's address, without a trailing slash: links are made from it.
    pub url: String,
}

pub struct Templates {
    env: Environment<'static>,
    shop: Shop,
}

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const FILES: [(&str, &str); 22] = templates!(
    "layout.txt",
    "layout.html",
    "welcome.txt",
    "welcome.html",
    "verify_email.txt",
    "verify_email.html",
    "password_reset.txt",
    "password_reset.html",
    "order_confirmed.txt",
    "order_confirmed.html",
    "payment_failed.txt",
    "payment_failed.html",
    "order_cancelled.txt",
    "order_cancelled.html",
    "payment_refunded.txt",
    "payment_refunded.html",
    "shipment_dispatched.txt",
    "shipment_dispatched.html",
    "shipment_delivered.txt",
    "shipment_delivered.html",
    "webhook_disabled.txt",
    "webhook_disabled.html",
);

impl Templates {
    /// Compiles every template: a syntax error is found at start-up, not at the first message.
    pub fn new(shop: Shop) -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        for (name, source) in FILES {
            env.add_template(name, source)?;
        }
        let templates = Self { env, shop };
        for kind in Kind::ALL {
            templates.env.get_template(&format!("{}.txt", kind.as_str()))?;
            templates.env.get_template(&format!("{}.html", kind.as_str()))?;
        }
        Ok(templates)
    }

    /// The subject and both parts of a message of `kind` to `recipient`, with `values` (the kind's
    /// own: an order, a link…).
    pub fn render(
        &self,
        kind: Kind,
        recipient: &Recipient,
        values: &impl Serialize,
    ) -> Result<Composed, minijinja::Error> {
        let ctx = context! {
            shop => Value::from_serialize(&self.shop),
            recipient => context! { name => recipient.name, email => recipient.email },
            ..Value::from_serialize(values)
        };
        let mut text = self.env.get_template(&format!("{}.txt", kind.as_str()))?.render_captured(&ctx)?;
        let subject = text.with_state_mut(|state| state.render_block("subject"))?;
        Ok(Composed {
            // One line: a template's stray newline must not reach a header.
            subject: subject.split_whitespace().collect::<Vec<_>>().join(" "),
            text: text.into_output(),
            html: self.env.get_template(&format!("{}.html", kind.as_str()))?.render(&ctx)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates() -> Templates {
        Templates::new(Shop { name: "Bazaar".into(), url: "https://shop.example".into() }).expect("templates compile")
    }

    fn ada() -> Recipient {
        Recipient { user_id: uuid::Uuid::nil(), email: "ada@example.com".into(), name: "Ada <Lovelace>".into() }
    }

    #[test]
    fn an_order_confirmation_lists_lines_total_and_address_and_escapes_html_only() {
        let order = json!({"order": {
            "id": "0193",
            "lines": [{"quantity": 2, "name": "Tea & cake", "sku": "TEA-1", "unit_price": "3.50 EUR", "line_total": "7.00 EUR"}],
            "total": "7.00 EUR",
            "address": ["Ada Lovelace", "1 Main St", "London", "N1 1AA", "GB"],
        }});
        let message = templates().render(Kind::OrderConfirmed, &ada(), &order).expect("rendered");
        assert_eq!(message.subject, "Your order 0193 is confirmed");
        assert!(message.text.starts_with("Hello Ada <Lovelace>,"), "{}", message.text);
        assert!(message.text.contains("2 × Tea & cake (TEA-1) at 3.50 EUR: 7.00 EUR"), "{}", message.text);
        assert!(message.text.contains("Total: 7.00 EUR"));
        assert!(message.text.contains("Ada Lovelace\n1 Main St\nLondon"));
        assert!(message.text.contains("https://shop.example/orders/0193"));
        assert!(message.html.contains("Hello Ada &lt;Lovelace&gt;,"), "{}", message.html);
        assert!(message.html.contains("Tea &amp; cake"));
        assert!(!message.text.contains("subject"), "the subject block is not part of the body");
    }

    #[test]
    fn every_kind_renders_with_its_values_and_a_missing_value_is_an_error() {
        let values = json!({
            "order": {"id": "0193", "lines": [], "total": "0.00 EUR", "address": []},
            "link": "https://shop.example/reset?token=abc", "expires_at": "2026-11-28 03:30 UTC",
            "reason": "card declined", "retryable": true, "amount": "7.00 EUR",
            "carrier": "DHL", "tracking_number": "JD0001",
            "endpoint": {"id": "0194", "url": "https://erp.example.com/hooks"}, "failures": 50,
            "last_error": "HTTP 500", "disabled_at": "2026-11-28 03:30 UTC",
        });
        for kind in Kind::ALL {
            let message = templates().render(kind, &ada(), &values).expect("rendered");
            assert!(!message.subject.is_empty() && !message.subject.contains('\n'), "{kind:?}");
            assert!(message.text.contains("— Bazaar"), "{kind:?}: {}", message.text);
        }
        let reset = templates().render(Kind::PasswordReset, &ada(), &values).expect("rendered");
        assert!(reset.text.contains("https://shop.example/reset?token=abc"));
        assert!(templates().render(Kind::ShipmentDispatched, &ada(), &json!({"order": {"id": "1"}})).is_err());
    }
}
