//! The module registry: every bounded context this binary can host.

use std::sync::Arc;

use kernel::Module;

/// Every module, in start-up order.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(users::UsersModule),
        Arc::new(catalog::CatalogModule),
        Arc::new(inventory::InventoryModule),
        Arc::new(orders::OrdersModule),
        Arc::new(shipping::ShippingModule),
        Arc::new(payments::PaymentsModule),
        Arc::new(basket::BasketModule),
        Arc::new(notifications::NotificationsModule),
        Arc::new(webhooks::WebhooksModule),
    ]
}

/// Every module of the registry and the events it consumes: a broker's queues and bindings.
pub fn subscriptions() -> Vec<(String, Vec<contracts::EventType>)> {
    all().iter().map(|m| (m.name().to_owned(), m.consumes())).collect()
}

pub fn names() -> impl Iterator<Item = &'static str> {
    all().into_iter().map(|m| m.name())
}

/// The modules named in `enabled`, in registry order. Names are validated with the settings.
pub fn select(enabled: &[String]) -> Vec<Arc<dyn Module>> {
    all().into_iter().filter(|m| enabled.iter().any(|e| e == m.name())).collect()
}

/// What a module is, for an operator planning a split: `bazaar modules`.
#[derive(Debug, serde::Serialize)]
pub struct Description {
    pub name: &'static str,
    /// What a gateway routes to the process hosting it.
    pub path_prefixes: &'static [&'static str],
    /// `<source>.<event>.v<version>`.
    pub publishes: Vec<String>,
    pub consumes: Vec<String>,
    /// `METHOD /path`.
    pub routes: Vec<String>,
    /// `section.key`: the settings it reads.
    pub settings: Vec<String>,
}

/// Every module of the registry, described from the modules themselves.
pub fn describe() -> Vec<Description> {
    all()
        .iter()
        .map(|m| {
            let mut routes = Vec::new();
            for (path, item) in &m.openapi().paths.paths {
                let methods = [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                ];
                routes.extend(
                    methods.iter().filter(|(_, op)| op.is_some()).map(|(method, _)| format!("{method} {path}")),
                );
            }
            Description {
                name: m.name(),
                path_prefixes: m.path_prefixes(),
                publishes: m.publishes().iter().map(ToString::to_string).collect(),
                consumes: m.consumes().iter().map(ToString::to_string).collect(),
                routes,
                settings: m.settings().iter().flat_map(kernel::settings::SectionSpec::keys).collect(),
            }
        })
        .collect()
}

/// The registry as text, a block per module.
pub fn render(modules: &[Description]) -> String {
    let mut out = String::new();
    for m in modules {
        let list = |items: &[String]| if items.is_empty() { "-".to_owned() } else { items.join(", ") };
        out += &format!(
            "{}\n  paths:     {}\n  publishes: {}\n  consumes:  {}\n  settings:  {}\n  routes:\n",
            m.name,
            m.path_prefixes.join(", "),
            list(&m.publishes),
            list(&m.consumes),
            list(&m.settings)
        );
        for route in &m.routes {
            out += &format!("    {route}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway routes by prefix: every route must fall under its module's prefixes, and no
    /// prefix may belong to two modules (or contain another's).
    #[test]
    fn every_route_is_under_its_modules_prefixes_and_prefixes_do_not_overlap() {
        let registry = describe();
        for module in &registry {
            assert!(!module.path_prefixes.is_empty(), "{} declares no path prefix", module.name);
            for route in &module.routes {
                let path = route.split_once(' ').map_or(route.as_str(), |(_, path)| path);
                let covered = module.path_prefixes.iter().any(|prefix| {
                    path == *prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
                });
                assert!(covered, "{}'s route {route} is under none of {:?}", module.name, module.path_prefixes);
            }
        }
        let prefixes: Vec<(&str, &str)> =
            registry.iter().flat_map(|m| m.path_prefixes.iter().map(move |p| (m.name, *p))).collect();
        for (i, (module, prefix)) in prefixes.iter().enumerate() {
            for (other, theirs) in &prefixes[i + 1..] {
                let nested = |a: &str, b: &str| a == b || a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'));
                assert!(
                    !nested(prefix, theirs) && !nested(theirs, prefix),
                    "{module}'s {prefix} and {other}'s {theirs}"
                );
            }
        }
    }

    #[test]
    fn module_names_are_unique_and_name_their_own_settings_section() {
        let registry = all();
        for (i, module) in registry.iter().enumerate() {
            assert!(registry[..i].iter().all(|m| m.name() != module.name()), "{} is registered twice", module.name());
        }
        for module in &registry {
            for spec in module.settings() {
                let own = spec.key() == module.name();
                let shared = registry.iter().all(|m| m.name() != spec.key());
                assert!(own || shared, "{} reads {}'s section", module.name(), spec.key());
            }
        }
    }
}
